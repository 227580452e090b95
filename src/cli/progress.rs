//! The upload progress bar: one line on stderr, redrawn in place, only on a terminal.

use std::io::{IsTerminal, Write};

const WIDTH: usize = 30;
const MIB: f64 = (1 << 20) as f64;

pub struct Bar;

impl Bar {
    /// A bar when stderr is a terminal; `None` when it is a file or a pipe.
    pub fn on_terminal() -> Option<Bar> {
        std::io::stderr().is_terminal().then_some(Bar)
    }

    pub fn show(&mut self, sent: u64, total: Option<u64>) {
        let line = match total.filter(|&total| total > 0) {
            Some(total) => {
                let done = (sent.min(total) as f64 / total as f64 * WIDTH as f64) as usize;
                format!(
                    "\r[{}{}] {:.1}/{:.1} MiB",
                    "#".repeat(done),
                    " ".repeat(WIDTH - done),
                    sent as f64 / MIB,
                    total as f64 / MIB
                )
            }
            None => format!("\r{:.1} MiB sent", sent as f64 / MIB),
        };
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(line.as_bytes());
        let _ = stderr.flush();
    }

    /// Ends the bar's line (when there was one), so what follows starts on its own.
    pub fn finish() {
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
}
