//! A scenario's result and its two files: `<date>-<scenario>.json` (every number, the settings
//! and the machine) and `<date>-<scenario>.md` (the tables a README can quote, each target with
//! `met` / `NOT met` next to the number it judges).
//!
//! A scenario fills in sections, numbers and targets as it measures; a failed or skipped
//! scenario still gets both files, carrying whatever it measured before it stopped and why it
//! stopped. Numbers are written as measured: nothing is rounded into the JSON, the markdown
//! rounds for reading.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::machine::Machine;
use super::settings::{Scenario, Settings};

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed,
    /// It could not run here (the reason says what is missing); not a failure.
    Skipped(String),
    Failed(String),
}

impl Outcome {
    fn text(&self) -> String {
        match self {
            Outcome::Completed => "completed".to_owned(),
            Outcome::Skipped(why) => format!("skipped: {why}"),
            Outcome::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// One target of the issue, judged against one measured number.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is judged, e.g. `backlog drain, narrow`.
    pub name: String,
    /// The limit, e.g. `≤ 1.5 × pg_recvlogical`.
    pub limit: String,
    /// The measured value as text, e.g. `1.32 ×`.
    pub measured: String,
    /// `None` when the value could not be measured.
    pub met: Option<bool>,
}

/// Everything one scenario produced.
#[derive(Debug)]
pub struct Report {
    pub scenario: Scenario,
    pub outcome: Outcome,
    pub machine: Machine,
    /// The scenario's numbers (a JSON object).
    pub results: serde_json::Map<String, serde_json::Value>,
    /// Markdown sections (tables), in order.
    pub sections: Vec<String>,
    pub targets: Vec<Target>,
    /// Caveats worth reading next to the numbers.
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: Scenario) -> Report {
        Report {
            scenario,
            outcome: Outcome::Completed,
            machine: Machine::read(),
            results: serde_json::Map::new(),
            sections: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: serde_json::Value) {
        self.results.insert(key.to_owned(), value);
    }

    pub fn target(
        &mut self,
        name: impl Into<String>,
        limit: &str,
        measured: String,
        met: Option<bool>,
    ) {
        self.targets.push(Target {
            name: name.into(),
            limit: limit.to_owned(),
            measured,
            met,
        });
    }

    fn stem(&self, settings: &Settings) -> String {
        match &settings.mode {
            Some(mode) => format!("{}-{}-{}", settings.date, mode.name, self.scenario.name()),
            None => format!("{}-{}", settings.date, self.scenario.name()),
        }
    }

    /// Writes `<date>-<scenario>.json` and `.md` into the results directory.
    pub fn write(&self, settings: &Settings) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(&settings.results_dir)
            .with_context(|| format!("create {}", settings.results_dir.display()))?;
        let json_path = settings
            .results_dir
            .join(format!("{}.json", self.stem(settings)));
        let md_path = settings
            .results_dir
            .join(format!("{}.md", self.stem(settings)));
        let json = serde_json::json!({
            "scenario": self.scenario.name(),
            "date": settings.date,
            "outcome": self.outcome.text(),
            "command": settings.command,
            "machine": self.machine.to_json(),
            "settings": settings.to_json(),
            "results": self.results,
            "targets": self.targets.iter().map(|t| serde_json::json!({
                "target": t.name,
                "limit": t.limit,
                "measured": t.measured,
                "met": t.met,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        });
        let text = serde_json::to_string_pretty(&json).context("encode the JSON result")?;
        std::fs::write(&json_path, text + "\n")
            .with_context(|| format!("write {}", json_path.display()))?;
        std::fs::write(&md_path, self.markdown(settings))
            .with_context(|| format!("write {}", md_path.display()))?;
        Ok((json_path, md_path))
    }

    /// The markdown file's text.
    pub fn markdown(&self, settings: &Settings) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "## starwal benchmark: {}{} ({})\n",
            self.scenario.name(),
            settings
                .mode
                .as_ref()
                .map_or_else(String::new, |m| format!(", mode `{}`", m.name)),
            settings.date
        );
        if let Some(mode) = &settings.mode {
            let vars: Vec<String> = mode
                .vars
                .iter()
                .map(|(k, v)| format!("`{k}={v}`"))
                .collect();
            let _ = writeln!(md, "Agent mode: {}\n", vars.join(", "));
        }
        if self.outcome != Outcome::Completed {
            let _ = writeln!(md, "**{}**\n", self.outcome.text());
        }
        for section in &self.sections {
            let _ = writeln!(md, "{section}");
        }
        if !self.targets.is_empty() {
            let _ = writeln!(md, "| target | limit | measured | result |");
            let _ = writeln!(md, "|---|---|---|---|");
            for t in &self.targets {
                let result = match t.met {
                    Some(true) => "met",
                    Some(false) => "**NOT met**",
                    None => "not measured",
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {result} |",
                    t.name, t.limit, t.measured
                );
            }
            md.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !self.notes.is_empty() {
            md.push('\n');
        }
        let _ = writeln!(md, "Machine: {}  ", self.machine.summary());
        let _ = writeln!(md, "Reproduce: `{}`", settings.command);
        md
    }
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1_048_576.0)
}

/// Seconds with two decimals.
pub fn secs(seconds: f64) -> String {
    format!("{seconds:.2}")
}
