//! The screen of `starwal top`, drawn from a [`Model`] alone (no I/O, no clock), so tests render
//! it into ratatui's `TestBackend` and read the text back.
//!
//! Top to bottom: a title line (agent, version, uptime); the agent's state (phase, health,
//! paused, lag, rates, buffer, process); one row per table (state, rows/s, totals, failures, last
//! load, last error); a progress bar per snapshot copy; the selected table's details; the
//! connection or the last lever's answer; the keys.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, LineGauge, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::model::{Link, Model, Notice};
use crate::control::client::{bytes_text, copy_text, phase_name, seconds_text};
use crate::control::pb;

/// The most copy bars shown at once; more copies than this show as a count (the table rows
/// still carry each one's state).
const MAX_COPY_BARS: usize = 8;
/// The most rows the selected table's details take; a longer error is cut (`starwal status`
/// prints it whole).
const MAX_DETAIL_ROWS: usize = 8;
/// Table rows kept in view before the details get room (more scroll with the selection).
const MIN_TABLE_ROWS: usize = 5;

/// From this many columns on, every column of the tables block is shown.
const WIDE: u16 = 120;

const LABEL: Style = Style::new().fg(Color::DarkGray);
const GOOD: Style = Style::new().fg(Color::Green);
const WARN: Style = Style::new().fg(Color::Yellow);
const BAD: Style = Style::new().fg(Color::Red);

/// Draws the whole screen.
pub fn render(frame: &mut Frame, model: &Model) {
    let copies: Vec<&pb::TableStatus> = model
        .status
        .iter()
        .flat_map(|status| &status.tables)
        .filter(|table| table.copy.is_some())
        .collect();
    let copy_rows = copies.len().min(MAX_COPY_BARS) + usize::from(copies.len() > MAX_COPY_BARS);
    let copy_height = if copies.is_empty() {
        0
    } else {
        copy_rows as u16 + 2
    };
    // The details take the rows they need, within what is left once the tables block has room
    // for its rows (up to MIN_TABLE_ROWS of them) and the fixed lines theirs: the tables come first.
    let details = detail(model);
    let area = frame.area();
    let table_rows = model
        .status
        .as_ref()
        .map_or(1, |status| status.tables.len().clamp(1, MIN_TABLE_ROWS));
    let fixed = 1 + 5 + usize::from(copy_height) + 2 + 1 + (table_rows + 3) + 2;
    let room = usize::from(area.height).saturating_sub(fixed).max(1);
    let detail_rows = details.as_ref().map_or(1, |(_, lines)| {
        wrapped_rows(lines, area.width.saturating_sub(2))
    });
    let detail_height = detail_rows.min(MAX_DETAIL_ROWS).min(room) as u16 + 2;
    let [title, agent, tables, copy_area, detail_area, notice, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(5),
        Constraint::Min(4),
        Constraint::Length(copy_height),
        Constraint::Length(detail_height),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(area);
    render_title(frame, title, model);
    render_agent(frame, agent, model);
    render_tables(frame, tables, model);
    if !copies.is_empty() {
        render_copies(frame, copy_area, &copies);
    }
    render_detail(frame, detail_area, details);
    render_notice(frame, notice, model);
    render_keys(frame, keys, model);
}

fn label(text: &str) -> Span<'_> {
    Span::styled(text, LABEL)
}

fn render_title(frame: &mut Frame, area: Rect, model: &Model) {
    let addr = crate::secret::redact_userinfo(&model.addr).into_owned();
    let mut spans = vec![
        Span::styled(" starwal top ", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" {addr}")),
    ];
    if let Some(status) = &model.status {
        spans.push(Span::raw(format!(
            "  agent {}  up {}",
            status.version,
            seconds_text(status.uptime_seconds)
        )));
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::new().add_modifier(Modifier::REVERSED)),
        area,
    );
}

fn render_agent(frame: &mut Frame, area: Rect, model: &Model) {
    let block = Block::bordered().title(" agent ");
    let Some(status) = &model.status else {
        let text = match &model.link {
            Link::Lost { .. } => "not reached yet (see below)",
            _ => "connecting…",
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    };
    let (health, health_style) = if status.serving {
        ("SERVING", GOOD)
    } else {
        ("NOT_SERVING", BAD)
    };
    let paused = if status.paused {
        Span::styled("yes", WARN.add_modifier(Modifier::BOLD))
    } else {
        Span::raw("no")
    };
    let state = Line::from(vec![
        label("phase "),
        Span::styled(
            phase_name(status.phase),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        label("   health "),
        Span::styled(health, health_style),
        Span::raw(format!(" ({})", status.health_detail)),
        label("   paused: "),
        paused,
    ]);
    let mut lag = vec![
        label("lag "),
        Span::raw(format!(
            "{}, {} of WAL",
            seconds_text(status.lag_seconds),
            bytes_text(status.lag_bytes)
        )),
    ];
    if status.unread_wal_bytes > 0 {
        lag.push(Span::styled(
            format!(" ({} not read yet)", bytes_text(status.unread_wal_bytes)),
            WARN,
        ));
    }
    lag.push(label("   buffered "));
    lag.push(Span::raw(format!(
        "{} of {}",
        bytes_text(status.buffered_bytes),
        bytes_text(status.max_buffer_bytes)
    )));
    lag.push(label("   slot retains "));
    lag.push(Span::raw(
        status
            .slot_retained_wal_bytes
            .map_or_else(|| "-".to_owned(), bytes_text),
    ));
    lag.push(label("   confirmed "));
    lag.push(Span::raw(
        status
            .confirmed_lsn
            .as_ref()
            .map_or("-", |lsn| lsn.text.as_str())
            .to_owned(),
    ));
    let in_flight: u64 = status.tables.iter().map(|t| t.loads_in_flight).sum();
    let rates = match &model.sample {
        Some(sample) => {
            let mut spans = vec![
                label("rows/s "),
                Span::raw(rate_text(sample.rows_per_second)),
                label("   loads/s "),
                Span::raw(rate_text(sample.loads_per_second)),
                label("   loads in flight "),
                Span::raw(in_flight.to_string()),
                label("   bytes/s "),
                Span::raw(bytes_text(finite_u64(sample.bytes_per_second))),
            ];
            if let Some(rss) = sample.rss_bytes {
                spans.push(label("   RSS "));
                spans.push(Span::raw(bytes_text(rss)));
            }
            if let Some(cpu) = sample.cpu_percent {
                spans.push(label("   CPU "));
                spans.push(Span::raw(format!("{cpu:.1}%")));
            }
            Line::from(spans)
        }
        None => Line::from(label("rates: waiting for the first sample…")),
    };
    frame.render_widget(
        Paragraph::new(vec![state, Line::from(lag), rates]).block(block),
        area,
    );
}

/// A table's state in one word, and how it should look.
fn table_state(table: &pb::TableStatus) -> (&'static str, Style) {
    if table.parked.is_some() {
        return ("parked", BAD);
    }
    if let Some(failing) = &table.failing {
        return if failing.retrying {
            ("retrying", WARN)
        } else {
            ("failing", BAD)
        };
    }
    match table.copy.as_ref().map(|copy| copy.state.as_str()) {
        Some("pending") => ("copy pending", WARN),
        Some("copying") => ("copying", Style::new().fg(Color::Cyan)),
        _ => ("ok", GOOD),
    }
}

fn render_tables(frame: &mut Frame, area: Rect, model: &Model) {
    let block = Block::bordered().title(" tables (t: select) ");
    let Some(status) = model.status.as_ref().filter(|s| !s.tables.is_empty()) else {
        let text = if model.status.is_some() {
            "no tables registered yet"
        } else {
            ""
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    };
    let selected = model.selected_table();
    // Narrow terminals get the columns that matter most; the details pane has the rest.
    let wide = area.width >= WIDE;
    // (header, width, shown when narrow); the table name comes first, the last error last.
    const COLUMNS: [(&str, u16, bool); 11] = [
        ("STATE", 12, true),
        ("ROWS/S", 7, true),
        ("COPY/S", 7, false),
        ("LOADED", 9, true),
        ("INSERTED", 9, false),
        ("UPDATED", 8, false),
        ("DELETED", 8, false),
        ("LOADS", 7, true),
        ("IN FLIGHT", 9, true),
        ("FAILED", 6, false),
        ("LAST LOAD", 10, true),
    ];
    let shown = |index: usize| wide || COLUMNS[index].2;
    let mut header = vec![Span::raw("TABLE")];
    header.extend(
        COLUMNS
            .iter()
            .enumerate()
            .filter(|(index, _)| shown(*index))
            .map(|(_, (name, _, _))| Span::raw(*name)),
    );
    header.push(Span::raw("LAST ERROR"));
    let header = Row::new(header).style(Style::new().add_modifier(Modifier::BOLD));
    let rows = status.tables.iter().map(|table| {
        let (state, state_style) = table_state(table);
        let rate = model.rate(&table.source);
        let failed: u64 = table.load_failures.iter().map(|f| f.count).sum();
        let cells: [Span; 11] = [
            Span::styled(state, state_style),
            Span::raw(rate.map_or_else(|| "-".to_owned(), |r| rate_text(r.rows_per_second))),
            Span::raw(rate.map_or_else(|| "-".to_owned(), |r| rate_text(r.copied_rows_per_second))),
            Span::raw(table.rows_loaded.to_string()),
            Span::raw(table.rows_inserted.to_string()),
            Span::raw(table.rows_updated.to_string()),
            Span::raw(table.rows_deleted.to_string()),
            Span::raw(table.loads.to_string()),
            Span::raw(table.loads_in_flight.to_string()),
            Span::styled(
                failed.to_string(),
                if failed > 0 { WARN } else { Style::new() },
            ),
            Span::raw(table.last_load_age_seconds.map_or_else(
                || "-".to_owned(),
                |age| format!("{} ago", seconds_text(age)),
            )),
        ];
        let mut row = vec![Span::raw(table.source.clone())];
        row.extend(
            cells
                .into_iter()
                .enumerate()
                .filter(|(index, _)| shown(*index))
                .map(|(_, cell)| cell),
        );
        row.push(Span::styled(
            table.last_error.clone().unwrap_or_default(),
            BAD,
        ));
        Row::new(row)
    });
    // The names as wide as the longest (within reason), the last error gets what is left.
    let name_width = status
        .tables
        .iter()
        .map(|table| table.source.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 40) as u16;
    let mut widths = vec![Constraint::Length(name_width)];
    widths.extend(
        COLUMNS
            .iter()
            .enumerate()
            .filter(|(index, _)| shown(*index))
            .map(|(_, (_, width, _))| Constraint::Length(*width)),
    );
    widths.push(Constraint::Fill(1));
    // Stateful: the table scrolls to keep the selected row in view.
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_stateful_widget(table, area, &mut TableState::new().with_selected(selected));
}

fn render_copies(frame: &mut Frame, area: Rect, copies: &[&pb::TableStatus]) {
    let block = Block::bordered().title(" snapshot copies ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines =
        Layout::vertical(vec![Constraint::Length(1); usize::from(inner.height)]).split(inner);
    for (table, line) in copies.iter().take(MAX_COPY_BARS).zip(lines.iter()) {
        let Some(copy) = &table.copy else { continue };
        let gauge = LineGauge::default()
            .ratio(copy_ratio(copy))
            .label(copy_label(&table.source, copy, area.width >= WIDE))
            .filled_style(Style::new().fg(Color::Cyan))
            .unfilled_style(LABEL);
        frame.render_widget(gauge, *line);
    }
    if copies.len() > MAX_COPY_BARS {
        if let Some(line) = lines.get(MAX_COPY_BARS) {
            frame.render_widget(
                Paragraph::new(format!(
                    "… and {} more (see the tables above)",
                    copies.len() - MAX_COPY_BARS
                )),
                *line,
            );
        }
    }
}

/// The filled share of a copy's bar, always within 0..=1 (the estimate is a planner's count:
/// a copy may end above it, and a pending one has none).
pub fn copy_ratio(copy: &pb::TableCopy) -> f64 {
    if copy.state == "done" {
        return 1.0;
    }
    if copy.rows_estimated == 0 {
        return 0.0;
    }
    let ratio = copy.rows_copied as f64 / copy.rows_estimated as f64;
    if ratio.is_finite() {
        ratio.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// `public.t copying 30% 300/1000 rows 3/10 chunks 1250 rows/s ETA 560 ms`, padded so the bars
/// of several tables line up; `public.t 30% 300/1000` when narrow.
fn copy_label(source: &str, copy: &pb::TableCopy, wide: bool) -> String {
    let rows = format!("{}/{}", copy.rows_copied, copy.rows_estimated);
    let chunks = format!("{}/{}", copy.chunks_done, copy.chunks_total);
    let percent = format!("{:.0}%", copy_ratio(copy) * 100.0);
    if !wide {
        // No padding and no rate on a narrow screen: the bar needs room too.
        return format!("{source} {percent} {rows} ");
    }
    let mut label = format!(
        "{source:<24} {:<7} {percent:>4} {rows:>17} rows {chunks:>9} chunks",
        copy.state
    );
    if copy.state == "copying" {
        label.push_str(&format!(
            " {:>8} rows/s ETA {:<8}",
            rate_text(copy.rows_per_second),
            copy.eta_seconds
                .map_or_else(|| "unknown".to_owned(), seconds_text)
        ));
    }
    label.push(' ');
    label
}

/// The selected table's title and detail lines; `None` before any table is known.
fn detail(model: &Model) -> Option<(String, Vec<Line<'static>>)> {
    let (Some(status), Some(index)) = (&model.status, model.selected_table()) else {
        return None;
    };
    let table = &status.tables[index];
    let title = format!(
        " {} → {} ({}/{}) ",
        table.source,
        table.target,
        index + 1,
        status.tables.len()
    );
    let duration = table.load_duration.clone().unwrap_or_default();
    let average = if duration.count > 0 {
        seconds_text(duration.sum_seconds / duration.count as f64)
    } else {
        "-".to_owned()
    };
    let failures = if table.load_failures.is_empty() {
        "none".to_owned()
    } else {
        table
            .load_failures
            .iter()
            .map(|f| format!("{} {}", f.kind, f.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines = vec![Line::from(vec![
        label("loads "),
        Span::raw(format!(
            "{} ({} deduplicated), average {average}",
            table.loads, table.loads_deduplicated
        )),
        label("   bytes "),
        Span::raw(bytes_text(table.bytes_loaded)),
        label("   truncates "),
        Span::raw(table.truncates.to_string()),
        label("   failed attempts "),
        Span::raw(failures),
        label("   retries "),
        Span::raw(table.load_retries.to_string()),
    ])];
    if let Some(copy) = &table.copy {
        lines.push(Line::from(vec![
            label("snapshot copy "),
            Span::raw(copy_text(copy)),
        ]));
    }
    if let Some(txn) = &table.open_transaction {
        lines.push(Line::from(vec![
            label("StarRocks transaction "),
            Span::raw(format!(
                "{} {} for {}: {} rows, visible at the source commit",
                txn.label,
                if txn.prepared { "prepared" } else { "open" },
                seconds_text(txn.age_seconds),
                txn.rows
            )),
        ]));
    }
    for txn in &table.streamed_transactions {
        lines.push(Line::from(vec![
            label("streamed transaction "),
            Span::raw(format!(
                "xid {} in {} {} for {}: {} rows loaded, visible at its COMMIT",
                txn.xid,
                txn.label,
                if txn.prepared { "prepared" } else { "open" },
                seconds_text(txn.age_seconds),
                txn.rows
            )),
        ]));
    }
    if let Some(parked) = &table.parked {
        lines.push(Line::styled(
            format!(
                "parked for {}: changes from {} held; fix the cause, then `starwal retry --table {}`: {}",
                seconds_text(parked.parked_seconds),
                parked.held_from,
                table.source,
                parked.error
            ),
            BAD,
        ));
    }
    if let Some(failing) = &table.failing {
        lines.push(Line::styled(
            format!(
                "loads failing for {} ({} failed attempts, last {}, {})",
                seconds_text(failing.failing_seconds),
                failing.attempts,
                failing.kind,
                if failing.retrying {
                    "retrying"
                } else {
                    "not retried"
                }
            ),
            WARN,
        ));
    }
    if let Some(error) = &table.last_error {
        lines.push(Line::styled(format!("last error: {error}"), BAD));
    }
    Some((title, lines))
}

/// Rows `lines` take wrapped at `width` (an estimate: wrapping breaks at words, so a line may
/// take one more; the pane's bound keeps that from mattering).
fn wrapped_rows(lines: &[Line], width: u16) -> usize {
    let width = usize::from(width.max(1));
    lines
        .iter()
        .map(|line| line.width().div_ceil(width).max(1))
        .sum()
}

fn render_detail(frame: &mut Frame, area: Rect, detail: Option<(String, Vec<Line<'static>>)>) {
    let Some((title, lines)) = detail else {
        frame.render_widget(Block::bordered().title(" table "), area);
        return;
    };
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(title))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The connection, when it is not live, then the last lever's answer.
fn render_notice(frame: &mut Frame, area: Rect, model: &Model) {
    let mut lines = Vec::new();
    match &model.link {
        Link::Lost { error, attempts } => {
            let plural = if *attempts == 1 { "" } else { "s" };
            let what = if model.status.is_some() {
                "connection lost"
            } else {
                "cannot reach the agent"
            };
            let stale = if model.status.is_some() {
                ", the numbers above are stale"
            } else {
                ""
            };
            lines.push(Line::styled(
                format!("{what} ({attempts} failed attempt{plural}; retrying every second{stale}): {error}"),
                BAD.add_modifier(Modifier::BOLD),
            ));
        }
        Link::Connecting => lines.push(Line::from("connecting…")),
        Link::Live => {}
    }
    match &model.notice {
        Some(Notice::Pending(lever)) => {
            lines.push(Line::styled(format!("{}…", lever.rpc()), WARN));
        }
        Some(Notice::Done(text)) => lines.push(Line::styled(text.clone(), GOOD)),
        Some(Notice::Failed(error)) => lines.push(Line::styled(error.clone(), BAD)),
        None => {}
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

fn render_keys(frame: &mut Frame, area: Rect, model: &Model) {
    let key = |k: &'static str| Span::styled(k, Style::new().add_modifier(Modifier::REVERSED));
    let mut spans = vec![
        key("q"),
        Span::raw(" quit  "),
        key("p"),
        Span::raw(" pause  "),
        key("r"),
        Span::raw(" resume  "),
        key("t"),
        Span::raw(" next table  "),
        key("T"),
        Span::raw(" previous"),
    ];
    if !model.has_token {
        spans.push(label(
            "   (no token: levers work only on a loopback agent without one)",
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `1250`, `12.5`, `0.3`: a rate with the precision a glance needs.
fn rate_text(rate: f64) -> String {
    if !rate.is_finite() || rate < 0.0 {
        return "-".to_owned();
    }
    if rate >= 100.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.1}")
    }
}

fn finite_u64(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;
    use crate::control::client::Lever;
    use crate::top::feed::Update;

    /// Renders `model` on a `width`×`height` screen and returns its text, one line per row.
    fn screen(model: &Model, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| render(frame, model)).unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn table(source: &str) -> pb::TableStatus {
        pb::TableStatus {
            source: source.into(),
            target: source.rsplit('.').next().unwrap().into(),
            ..pb::TableStatus::default()
        }
    }

    fn streaming_model() -> Model {
        let mut model = Model::new("http://user:pw@127.0.0.1:50051", true);
        let mut orders = table("public.orders");
        orders.rows_inserted = 1200;
        orders.rows_loaded = 1180;
        orders.loads = 12;
        orders.loads_in_flight = 2;
        orders.last_load_age_seconds = Some(0.4);
        orders.load_duration = Some(pb::Histogram {
            buckets: vec![],
            sum_seconds: 1.2,
            count: 12,
        });
        let mut items = table("public.items");
        items.last_error = Some("Stream Load of items: connection refused".into());
        items.failing = Some(pb::LoadFailing {
            failing_seconds: 12.0,
            attempts: 3,
            kind: "connection".into(),
            retrying: true,
            ..pb::LoadFailing::default()
        });
        items.open_transaction = Some(pb::OpenTransaction {
            label: "starwal_s_items_1".into(),
            rows: 5000,
            age_seconds: 2.5,
            prepared: false,
        });
        items.streamed_transactions = vec![pb::StreamedTransaction {
            xid: 4242,
            label: "starwal_s_items_x4242_s".into(),
            rows: 700,
            age_seconds: 1.5,
            prepared: true,
        }];
        items.load_failures = vec![pb::LoadFailureCount {
            kind: "connection".into(),
            count: 3,
        }];
        items.copy = Some(pb::TableCopy {
            state: "copying".into(),
            rows_copied: 300,
            rows_estimated: 1000,
            chunks_done: 3,
            chunks_total: 10,
            rows_per_second: 1250.0,
            eta_seconds: Some(0.56),
        });
        model.apply(Update::Status(Box::new(pb::GetStatusResponse {
            phase: pb::Phase::Cdc.into(),
            serving: true,
            health_detail: "streaming".into(),
            lag_seconds: 0.25,
            lag_bytes: 2048,
            buffered_bytes: 1024,
            max_buffer_bytes: 256 << 20,
            uptime_seconds: 62.0,
            version: "0.1.0".into(),
            tables: vec![orders, items],
            ..pb::GetStatusResponse::default()
        })));
        model.apply(Update::Sample(Box::new(pb::StreamMetricsResponse {
            phase: pb::Phase::Cdc.into(),
            serving: true,
            rows_per_second: 42.0,
            loads_per_second: 1.0,
            bytes_per_second: 4096.0,
            rss_bytes: Some(12 << 20),
            cpu_percent: Some(1.5),
            tables: vec![pb::TableRate {
                source: "public.orders".into(),
                rows_per_second: 42.0,
                ..pb::TableRate::default()
            }],
            ..pb::StreamMetricsResponse::default()
        })));
        model
    }

    #[test]
    fn a_streaming_agent_shows_its_state_tables_and_copies() {
        let model = streaming_model();
        let text = screen(&model, 160, 40);
        assert!(text.contains("phase CDC"), "{text}");
        assert!(text.contains("health SERVING (streaming)"), "{text}");
        assert!(text.contains("paused: no"), "{text}");
        assert!(text.contains("lag 250 ms, 2.0 KiB of WAL"), "{text}");
        assert!(text.contains("buffered 1.0 KiB of 256.0 MiB"), "{text}");
        assert!(text.contains("rows/s 42.0"), "{text}");
        assert!(text.contains("loads in flight 2"), "{text}");
        assert!(text.contains("RSS 12.0 MiB"), "{text}");
        assert!(text.contains("agent 0.1.0  up 1m 02s"), "{text}");
        // The password in the address is not shown.
        assert!(!text.contains("pw@"), "{text}");
        // Table rows: state, rate, totals, the last error.
        let orders = text.lines().find(|l| l.contains("public.orders")).unwrap();
        assert!(orders.contains(" ok "), "{orders}");
        assert!(orders.contains("42.0"), "{orders}");
        assert!(orders.contains("1180"), "{orders}");
        assert!(orders.contains("400 ms ago"), "{orders}");
        let items = text.lines().find(|l| l.contains("public.items")).unwrap();
        assert!(items.contains("retrying"), "{items}");
        assert!(items.contains("connection refused"), "{text}");
        // The copy's bar and label.
        assert!(text.contains("snapshot copies"), "{text}");
        let bar = text
            .lines()
            .find(|l| l.contains("public.items") && l.contains("chunks"))
            .unwrap();
        assert!(bar.contains("copying"), "{bar}");
        assert!(bar.contains("300/1000"), "{bar}");
        assert!(bar.contains(" 30% "), "{bar}");
        assert!(bar.contains("3/10"), "{bar}");
        assert!(bar.contains("ETA 560 ms"), "{bar}");
        // The first table is selected: its details, average load 100 ms.
        assert!(text.contains("public.orders → orders (1/2)"), "{text}");
        assert!(text.contains("average 100 ms"), "{text}");
        assert!(text.contains("q quit"), "{text}");
    }

    #[test]
    fn the_selected_table_shows_its_errors() {
        let mut model = streaming_model();
        model.select(1);
        let text = screen(&model, 160, 40);
        assert!(text.contains("public.items → items (2/2)"), "{text}");
        assert!(
            text.contains(
                "loads failing for 12.0 s (3 failed attempts, last connection, retrying)"
            ),
            "{text}"
        );
        assert!(text.contains("failed attempts connection 3"), "{text}");
        assert!(
            text.contains("StarRocks transaction starwal_s_items_1 open for 2.5 s: 5000 rows"),
            "{text}"
        );
        assert!(
            text.contains(
                "streamed transaction xid 4242 in starwal_s_items_x4242_s prepared for 1.5 s: 700 rows loaded"
            ),
            "{text}"
        );
    }

    #[test]
    fn pause_lost_link_and_refusals_are_on_screen() {
        let mut model = streaming_model();
        model.lever_answered(
            Lever::Pause,
            Ok(pb::LeverState {
                phase: pb::Phase::Cdc.into(),
                paused: true,
            }),
        );
        let text = screen(&model, 160, 40);
        assert!(text.contains("paused: yes"), "{text}");
        assert!(text.contains("paused: the agent no longer reads"), "{text}");

        model.lever_answered(
            Lever::Resume,
            Err("the control server refused Control.Resume".into()),
        );
        let text = screen(&model, 160, 40);
        assert!(text.contains("refused Control.Resume"), "{text}");

        model.apply(Update::Lost("cannot reach the control server".into()));
        let text = screen(&model, 160, 40);
        assert!(
            text.contains("connection lost (1 failed attempt; retrying every second"),
            "{text}"
        );
        // What was known stays on screen, and so does the lever's answer.
        assert!(text.contains("public.orders"), "{text}");
        assert!(text.contains("refused Control.Resume"), "{text}");

        let mut never = Model::new("127.0.0.1:1", false);
        never.apply(Update::Lost("connection refused".into()));
        let text = screen(&never, 160, 40);
        assert!(
            text.contains("cannot reach the agent (1 failed attempt; retrying every second): connection refused"),
            "{text}"
        );
    }

    #[test]
    fn before_any_answer_and_on_tiny_screens_nothing_panics() {
        let model = Model::new("127.0.0.1:1", false);
        let text = screen(&model, 80, 24);
        assert!(text.contains("connecting"), "{text}");
        assert!(text.contains("no token"), "{text}");
        let mut model = streaming_model();
        // Many copies, odd estimates: bars stay within range, the rest is counted.
        let status = model.status.as_mut().unwrap();
        for n in 0..12 {
            let mut extra = table(&format!("public.t{n}"));
            extra.copy = Some(pb::TableCopy {
                state: "copying".into(),
                rows_copied: 5 + n,
                rows_estimated: n,
                ..pb::TableCopy::default()
            });
            status.tables.push(extra);
        }
        let text = screen(&model, 160, 60);
        assert!(text.contains("… and 5 more"), "{text}");
        for (width, height) in [(1, 1), (10, 3), (40, 10), (80, 24), (300, 100)] {
            screen(&model, width, height);
        }
    }

    #[test]
    fn a_narrow_screen_keeps_the_main_columns_and_the_selected_row() {
        let mut model = streaming_model();
        let status = model.status.as_mut().unwrap();
        for n in 0..20 {
            status.tables.push(table(&format!("public.extra{n:02}")));
        }
        model.selected = 21;
        let text = screen(&model, 80, 24);
        let header = text.lines().find(|l| l.contains("TABLE")).unwrap();
        for column in [
            "STATE",
            "ROWS/S",
            "LOADED",
            "LOADS",
            "IN FLIGHT",
            "LAST LOAD",
        ] {
            assert!(header.contains(column), "{column}: {header}");
        }
        assert!(!header.contains("INSERTED"), "{header}");
        // The list scrolled to the selection, and its details are there.
        assert!(text.contains("│public.extra19"), "{text}");
        assert!(text.contains("public.extra19 → extra19 (22/22)"), "{text}");
        assert!(text.contains("q quit"), "{text}");
    }

    #[test]
    fn copy_ratios_stay_in_range() {
        let copy = |state: &str, rows_copied, rows_estimated| pb::TableCopy {
            state: state.into(),
            rows_copied,
            rows_estimated,
            ..pb::TableCopy::default()
        };
        assert_eq!(copy_ratio(&copy("pending", 0, 0)), 0.0);
        assert_eq!(copy_ratio(&copy("copying", 300, 1000)), 0.3);
        assert_eq!(copy_ratio(&copy("copying", 1500, 1000)), 1.0);
        assert_eq!(copy_ratio(&copy("done", 7, 0)), 1.0);
        assert_eq!(rate_text(f64::NAN), "-");
        assert_eq!(rate_text(1250.4), "1250");
        assert_eq!(finite_u64(f64::INFINITY), 0);
    }
}
