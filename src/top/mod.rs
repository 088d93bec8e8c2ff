//! `starwal top`: a live terminal view of a running agent, over its control server.
//!
//! [`feed`] follows the agent (a status, then `Metrics.StreamMetrics` with a status beside each
//! sample, reconnecting forever); [`model`] holds what is shown and maps keys to actions;
//! [`view`] draws the model (pure, tested with ratatui's `TestBackend`). This file is the loop
//! between them and the terminal: raw mode and the alternate screen for as long as it runs, and
//! restored on every way out — `q`, Ctrl-C (a key in raw mode), the signal future the CLI
//! passes (SIGINT/SIGTERM from elsewhere), an error, or a panic (ratatui's hook restores first).
//!
//! `p`/`r` call `Control.Pause`/`Resume` with the token like `starwal pause|resume`; a refusal
//! or an unreachable agent is shown on the screen, never fatal.

mod feed;
mod model;
mod view;

use std::future::Future;
use std::io::{self, IsTerminal as _};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use crate::control::client::{self as control_client, ClientError, Lever};
use crate::control::pb;
use crate::secret::Secret;
use model::{Action, Model};

/// What `starwal top` needs beyond the terminal.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// The agent's control server, `http://host:port` or `host:port`.
    pub addr: String,
    /// Sent as a bearer token with the lever RPCs (`p`, `r`).
    pub token: Option<Secret>,
    /// Milliseconds between samples (the agent clamps it to 100..=60000).
    pub interval_ms: u32,
}

/// Why `starwal top` could not run or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("starwal top draws on a terminal, and {0} is not one; for scripts use `starwal status --json`")]
    NotATerminal(&'static str),
    #[error(transparent)]
    Usage(ClientError),
    #[error("the terminal failed: {0}")]
    Terminal(#[source] io::Error),
}

impl TopError {
    /// A usage error (exit code 2), as opposed to a runtime failure (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, TopError::NotATerminal(_) | TopError::Usage(_))
    }
}

/// How often the key reader wakes up to see whether the screen is gone (it blocks otherwise).
const KEY_POLL: Duration = Duration::from_millis(200);

/// Runs the view until `q`, Ctrl-C or `shutdown`; the terminal is restored before it returns.
/// A malformed address or token, or stdin/stdout not being a terminal, is refused before the
/// screen is touched.
pub async fn run(options: TopOptions, shutdown: impl Future<Output = ()>) -> Result<(), TopError> {
    control_client::check_args(&options.addr, options.token.as_ref()).map_err(TopError::Usage)?;
    if !io::stdout().is_terminal() {
        return Err(TopError::NotATerminal("stdout"));
    }
    if !io::stdin().is_terminal() {
        return Err(TopError::NotATerminal("stdin"));
    }
    let mut screen = Screen::enter().map_err(TopError::Terminal)?;

    let (keys_tx, mut keys) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("starwal-top-keys".into())
        .spawn(move || read_keys(&keys_tx))
        .map_err(TopError::Terminal)?;
    let (updates_tx, mut updates) = mpsc::channel(4);
    let feed = tokio::spawn(feed::run(
        options.addr.clone(),
        options.interval_ms,
        updates_tx,
    ));
    let (answers_tx, mut answers) = mpsc::unbounded_channel();

    let mut model = Model::new(&options.addr, options.token.is_some());
    tokio::pin!(shutdown);
    let result = loop {
        if let Err(err) = screen.terminal.draw(|frame| view::render(frame, &model)) {
            break Err(TopError::Terminal(err));
        }
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            key = keys.recv() => match key {
                Some(Ok(event)) => match model::action(&event) {
                    Some(Action::Quit) => break Ok(()),
                    Some(Action::Pull(lever)) => {
                        model.lever_sent(lever);
                        tokio::spawn(pull(
                            options.addr.clone(),
                            options.token.clone(),
                            lever,
                            answers_tx.clone(),
                        ));
                    }
                    Some(Action::NextTable) => model.select(1),
                    Some(Action::PreviousTable) => model.select(-1),
                    None => {}
                },
                Some(Err(err)) => break Err(TopError::Terminal(err)),
                None => break Err(TopError::Terminal(io::Error::other("the key reader stopped"))),
            },
            Some(update) = updates.recv() => model.apply(update),
            Some((lever, answer)) = answers.recv() => model.lever_answered(lever, answer),
        }
    };
    feed.abort();
    drop(screen);
    result
}

/// Pulls `lever` and sends the answer (or the error as the CLI prints it) to the loop.
async fn pull(
    addr: String,
    token: Option<Secret>,
    lever: Lever,
    answers: mpsc::UnboundedSender<(Lever, Result<pb::LeverState, String>)>,
) {
    let answer = control_client::pull(&addr, token.as_ref(), lever)
        .await
        .map_err(|err| crate::error_text::chain(&err).to_string());
    let _ = answers.send((lever, answer));
}

/// Reads terminal events on its own thread (crossterm's reads block) until the loop is gone.
fn read_keys(keys: &mpsc::UnboundedSender<io::Result<Event>>) {
    loop {
        match event::poll(KEY_POLL) {
            Ok(true) => {
                let event = event::read();
                let failed = event.is_err();
                if keys.send(event).is_err() || failed {
                    return;
                }
            }
            Ok(false) if keys.is_closed() => return,
            Ok(false) => {}
            Err(err) => {
                let _ = keys.send(Err(err));
                return;
            }
        }
    }
}

/// The terminal in raw mode on the alternate screen; dropping it restores the terminal (also
/// when the loop returns an error). A panic restores it through ratatui's hook.
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> io::Result<Screen> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(err) => {
                // Raw mode may be on already when the alternate screen failed.
                ratatui::restore();
                Err(err)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        ratatui::restore();
    }
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Screen")
    }
}
