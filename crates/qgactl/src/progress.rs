//! A one-line progress bar on stderr (only when it is a terminal, unless
//! forced with --progress).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
}

pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

pub fn human(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Progress {
    pub fn new(label: &str, total: Option<u64>, force: Option<bool>) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            start: Instant::now(),
            last: None,
            enabled: force.unwrap_or_else(stderr_is_tty),
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        let now = Instant::now();
        if self.enabled && self.last.is_none_or(|t| now - t >= Duration::from_millis(100)) {
            self.last = Some(now);
            self.draw(false);
        }
    }

    fn draw(&self, last: bool) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = format!("{}/s", human(self.done as f64 / secs));
        let line = match self.total {
            Some(t) if t > 0 => {
                let frac = (self.done as f64 / t as f64).min(1.0);
                let width = 30;
                let filled = (frac * width as f64).round() as usize;
                format!(
                    "{} [{}{}] {:3.0}% {} / {}  {}",
                    self.label,
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    frac * 100.0,
                    human(self.done as f64),
                    human(t as f64),
                    rate
                )
            }
            _ => format!("{} {}  {}", self.label, human(self.done as f64), rate),
        };
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r{line}\x1b[K{}", if last { "\n" } else { "" });
        let _ = e.flush();
    }

    /// Draws the final state (and ends the line).
    pub fn finish(&mut self) {
        if self.enabled {
            self.draw(true);
            self.enabled = false;
        }
    }

    /// Ends the line without claiming completion (on errors).
    pub fn abandon(&mut self) {
        if self.enabled && self.last.is_some() {
            eprintln!();
        }
        self.enabled = false;
    }
}
