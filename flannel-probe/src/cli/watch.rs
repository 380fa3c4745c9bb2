//! `flannel-probe watch`: the live per-peer table, full screen on a
//! terminal, else (or with `--plain`) one plain table or JSON line per
//! interval.
use std::{
    io::{IsTerminal as _, Stdout, Write as _},
    sync::{
        Once,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Args;
use futures::StreamExt as _;
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{Event, EventStream},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};

use super::{Common, duration};
use crate::{
    logcapture,
    probe::{Probe, Shutdown, Windows},
    render::{
        Format, json, npd, text,
        tui::{self, Action, WatchState},
    },
};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Refresh interval.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub interval: Duration,
    /// Print one plain table (or, with --format json, one JSON object) per
    /// interval instead of the full-screen table; automatic when stdout is
    /// not a terminal.
    #[arg(long)]
    pub plain: bool,
}

pub(crate) async fn run(common: &Common, args: &WatchArgs) -> Result<i32> {
    let plain = args.plain || common.format != Format::Text || !std::io::stdout().is_terminal();
    if plain {
        run_plain(common, args).await
    } else {
        run_screen(common, args).await
    }
}

async fn run_plain(common: &Common, args: &WatchArgs) -> Result<i32> {
    let mut shutdown = Shutdown::install()?;
    let mut probe = Probe::start(&common.probe_options()).await?;
    let mut sampler = Windows::new(&mut probe)?;
    let mut tick = tokio::time::interval(args.interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return Ok(0),
            // A device changed: follow it now; the table waits for the tick.
            _ = probe.link_changed() => {
                probe.refresh().await?;
                continue;
            }
        }
        probe.refresh().await?;
        let report = sampler.next(&mut probe)?;
        let text = match common.format {
            Format::Json => json::line(&report)?,
            Format::Npd => npd::line(&report),
            Format::Text => common.paint(&text::watch_plain(&report, std::time::SystemTime::now())),
        };
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{text}").and_then(|()| out.flush()) {
            Ok(()) => {}
            // The reader is gone (`watch --plain | head`): done.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            Err(e) => return Err(e).context("writing to stdout failed"),
        }
    }
}

async fn run_screen(common: &Common, args: &WatchArgs) -> Result<i32> {
    // From here a signal ends the loop (and restores the terminal) instead
    // of killing the process. Errors before the screen is taken
    // (privileges, eBPF, bad names) print as usual.
    let mut shutdown = Shutdown::install()?;
    let mut probe = Probe::start(&common.probe_options()).await?;
    let started = Instant::now();
    let mut sampler = Windows::new(&mut probe)?;

    let mut screen = Screen::enter()?;
    let mut state = WatchState::new();
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    screen.draw(&state)?;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // The overlay may vanish and come back: a failed refresh is
                // shown and retried next interval, never fatal.
                let refreshed = probe.refresh().await;
                match sampler.next(&mut probe) {
                    Ok(report) => state.update(report, started.elapsed()),
                    Err(e) => state.set_error(format!("{e:#}")),
                }
                if let Err(e) = refreshed {
                    state.set_error(format!("{e:#}"));
                }
                for line in logcapture::drain() {
                    state.event(logcapture::without_timestamp(&line));
                }
            }
            ev = keys.next() => match ev {
                Some(Ok(Event::Key(k))) => match state.key(k) {
                    Action::Quit => break,
                    Action::None => continue,
                    Action::Redraw => {}
                },
                Some(Ok(Event::Resize(..))) => {}
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("reading the terminal failed"),
                // The terminal went away.
                None => break,
            },
            _ = shutdown.wait() => break,
            // A device changed: re-attach now; the table updates at the tick.
            _ = probe.link_changed() => {
                if let Err(e) = probe.refresh().await {
                    state.set_error(format!("{e:#}"));
                }
                continue;
            }
        }
        screen.draw(&state)?;
    }
    drop(screen);
    Ok(0)
}

/// True while the terminal is in raw mode on the alternate screen.
static SCREEN_TAKEN: AtomicBool = AtomicBool::new(false);

/// Gives the terminal back: main screen, cursor, cooked mode, logs to
/// stderr. Safe to call any number of times, from a panic hook too.
fn restore_terminal() {
    if SCREEN_TAKEN.swap(false, Ordering::SeqCst) {
        let mut out = std::io::stdout();
        let _ = execute!(out, LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
        let _ = out.flush();
    }
    logcapture::capture(false);
}

/// The full-screen terminal; restored when dropped (return, error, unwind).
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> Result<Self> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            // A panic restores the terminal first, so its message is
            // readable on the normal screen.
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        logcapture::capture(true);
        SCREEN_TAKEN.store(true, Ordering::SeqCst);
        let taken = (|| -> Result<Self> {
            terminal::enable_raw_mode().context("switching the terminal to raw mode failed")?;
            execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)
                .context("switching to the alternate screen failed")?;
            let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))
                .context("setting up the terminal failed")?;
            Ok(Self { terminal })
        })();
        if taken.is_err() {
            restore_terminal();
        }
        taken
    }

    fn draw(&mut self, state: &WatchState) -> Result<()> {
        self.terminal
            .draw(|f| tui::draw(f, state))
            .context("drawing the screen failed")?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}
