//! What `starwal top` shows, as data: the latest status and sample, the link to the agent, the
//! selected table and the answer to the last key that pulled a lever. Pure: keys come in as
//! crossterm events and leave as [`Action`]s; the loop in `mod.rs` does the I/O.

use ratatui::crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};

use super::feed::Update;
use crate::control::client::Lever;
use crate::control::pb;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Pull(Lever),
    NextTable,
    PreviousTable,
}

/// The action of a terminal event, if any: `q`/Ctrl-C quit (raw mode turns Ctrl-C into a key,
/// not SIGINT), `p` pause, `r` resume, `t`/Tab/↓ next table, `T`/Shift-Tab/↑ previous.
pub fn action(event: &Event) -> Option<Action> {
    let Event::Key(key) = event else {
        return None;
    };
    // Repeats count (holding `t` walks the tables); releases (reported by some terminals) do not.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') | KeyCode::Char('C') if ctrl => Some(Action::Quit),
        _ if ctrl => None,
        KeyCode::Char('q') | KeyCode::Char('Q') => Some(Action::Quit),
        KeyCode::Char('p') => Some(Action::Pull(Lever::Pause)),
        KeyCode::Char('r') => Some(Action::Pull(Lever::Resume)),
        KeyCode::Char('t') | KeyCode::Tab | KeyCode::Down => Some(Action::NextTable),
        KeyCode::Char('T') | KeyCode::BackTab | KeyCode::Up => Some(Action::PreviousTable),
        _ => None,
    }
}

/// The state of the connection to the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// Nothing received yet.
    Connecting,
    /// The last exchange succeeded.
    Live,
    /// The last attempt failed with `error`; `attempts` failed in a row. What was shown before
    /// stays on screen, marked as stale.
    Lost { error: String, attempts: u32 },
}

/// The answer to the last lever key.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The RPC is under way.
    Pending(Lever),
    /// The agent accepted it.
    Done(String),
    /// The agent refused it or could not be reached (the error as the CLI prints it).
    Failed(String),
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct Model {
    /// The control server, as given (userinfo redacted when shown).
    pub addr: String,
    /// Whether a token is sent with lever RPCs (the footer says so: without one only a loopback
    /// agent with no token accepts them).
    pub has_token: bool,
    pub link: Link,
    pub status: Option<pb::GetStatusResponse>,
    pub sample: Option<pb::StreamMetricsResponse>,
    /// Index into the status's tables (kept in range by [`Model::selected_table`]).
    pub selected: usize,
    pub notice: Option<Notice>,
}

impl Model {
    pub fn new(addr: &str, has_token: bool) -> Model {
        Model {
            addr: addr.to_owned(),
            has_token,
            link: Link::Connecting,
            status: None,
            sample: None,
            selected: 0,
            notice: None,
        }
    }

    /// Takes in what the feed reported.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Status(status) => {
                self.status = Some(*status);
                self.link = Link::Live;
            }
            Update::Sample(sample) => {
                self.sample = Some(*sample);
                self.link = Link::Live;
            }
            Update::Lost(error) => {
                let attempts = match &self.link {
                    Link::Lost { attempts, .. } => attempts.saturating_add(1),
                    _ => 1,
                };
                self.link = Link::Lost { error, attempts };
            }
        }
    }

    /// A lever RPC was sent.
    pub fn lever_sent(&mut self, lever: Lever) {
        self.notice = Some(Notice::Pending(lever));
    }

    /// A lever RPC answered: the agent's state right after is shown at once (the next status
    /// would show it within an interval anyway).
    pub fn lever_answered(&mut self, lever: Lever, answer: Result<pb::LeverState, String>) {
        self.notice = Some(match answer {
            Ok(state) => {
                if let Some(status) = &mut self.status {
                    status.phase = state.phase;
                    status.paused = state.paused;
                }
                if let Some(sample) = &mut self.sample {
                    sample.phase = state.phase;
                    sample.paused = state.paused;
                }
                Notice::Done(crate::control::client::lever_text(lever, &state))
            }
            Err(error) => Notice::Failed(error),
        });
    }

    /// Moves the selection by `step` tables, wrapping around.
    pub fn select(&mut self, step: isize) {
        let count = self.status.as_ref().map_or(0, |status| status.tables.len());
        if count == 0 {
            self.selected = 0;
            return;
        }
        let current = self.selected.min(count - 1) as isize;
        self.selected = (current + step).rem_euclid(count as isize) as usize;
    }

    /// The selected table's index, within range (the table list may have shrunk since).
    pub fn selected_table(&self) -> Option<usize> {
        let count = self.status.as_ref()?.tables.len();
        (count > 0).then(|| self.selected.min(count - 1))
    }

    /// The latest sample's rates of table `source`.
    pub fn rate(&self, source: &str) -> Option<&pb::TableRate> {
        self.sample
            .as_ref()?
            .tables
            .iter()
            .find(|rate| rate.source == source)
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::{KeyEvent, KeyEventState};

    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        })
    }

    #[test]
    fn keys_map_to_actions() {
        let none = KeyModifiers::NONE;
        assert_eq!(action(&key(KeyCode::Char('q'), none)), Some(Action::Quit));
        assert_eq!(
            action(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        // A plain `c` is nothing, and so is Ctrl-P: only the plain letters pull levers.
        assert_eq!(action(&key(KeyCode::Char('c'), none)), None);
        assert_eq!(
            action(&key(KeyCode::Char('p'), KeyModifiers::CONTROL)),
            None
        );
        assert_eq!(
            action(&key(KeyCode::Char('p'), none)),
            Some(Action::Pull(Lever::Pause))
        );
        assert_eq!(
            action(&key(KeyCode::Char('r'), none)),
            Some(Action::Pull(Lever::Resume))
        );
        assert_eq!(
            action(&key(KeyCode::Char('t'), none)),
            Some(Action::NextTable)
        );
        assert_eq!(action(&key(KeyCode::Up, none)), Some(Action::PreviousTable));
        let mut release = KeyEvent::new(KeyCode::Char('q'), none);
        release.kind = KeyEventKind::Release;
        assert_eq!(action(&Event::Key(release)), None);
        assert_eq!(action(&Event::Resize(80, 24)), None);
    }

    #[test]
    fn selection_wraps_and_stays_in_range() {
        let mut model = Model::new("http://127.0.0.1:50051", false);
        model.select(1);
        assert_eq!(model.selected_table(), None);
        model.status = Some(pb::GetStatusResponse {
            tables: vec![pb::TableStatus::default(); 3],
            ..pb::GetStatusResponse::default()
        });
        model.select(-1);
        assert_eq!(model.selected_table(), Some(2));
        model.select(1);
        assert_eq!(model.selected_table(), Some(0));
        model.selected = 2;
        model.status.as_mut().unwrap().tables.truncate(1);
        assert_eq!(model.selected_table(), Some(0));
    }

    #[test]
    fn losses_count_until_the_link_is_back() {
        let mut model = Model::new("http://127.0.0.1:50051", false);
        model.apply(Update::Lost("refused".into()));
        model.apply(Update::Lost("refused again".into()));
        assert_eq!(
            model.link,
            Link::Lost {
                error: "refused again".into(),
                attempts: 2
            }
        );
        model.apply(Update::Status(Box::default()));
        assert_eq!(model.link, Link::Live);
    }

    #[test]
    fn a_lever_answer_shows_at_once() {
        let mut model = Model::new("http://127.0.0.1:50051", true);
        model.apply(Update::Status(Box::default()));
        model.lever_sent(Lever::Pause);
        assert_eq!(model.notice, Some(Notice::Pending(Lever::Pause)));
        model.lever_answered(
            Lever::Pause,
            Ok(pb::LeverState {
                phase: pb::Phase::Cdc.into(),
                paused: true,
            }),
        );
        assert!(model.status.as_ref().unwrap().paused);
        assert!(matches!(&model.notice, Some(Notice::Done(text)) if text.starts_with("paused")));
        model.lever_answered(Lever::Resume, Err("refused".into()));
        assert_eq!(model.notice, Some(Notice::Failed("refused".into())));
    }
}
