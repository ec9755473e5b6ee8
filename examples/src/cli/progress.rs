//! Progress bars on stderr (indicatif) for the library's long steps.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use parallel_decode::loading::{Progress, ProgressStep, Unit};

use super::GlobalOpts;

/// The one set of bars of the process; log lines are printed through it so they do not tear
/// the bars.
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(MultiProgress::new)
}

/// A stderr writer for `tracing` that suspends the bars while a line is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Draws one bar per step, or nothing when stderr is not a terminal or `--no-progress`.
pub struct Bars {
    multi: Option<&'static MultiProgress>,
}

impl Bars {
    pub fn new(global: &GlobalOpts) -> Self {
        let visible = !global.no_progress && std::io::stderr().is_terminal();
        Self {
            multi: visible.then(multi),
        }
    }
}

struct Bar(ProgressBar);

impl ProgressStep for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish();
    }
}

struct Hidden;

impl ProgressStep for Hidden {
    fn advance(&self, _n: u64) {}
}

impl Progress for Bars {
    fn start(&self, label: &str, total: Option<u64>, unit: Unit) -> Box<dyn ProgressStep + '_> {
        let Some(multi) = &self.multi else {
            tracing::info!("{label}");
            return Box::new(Hidden);
        };
        let bar = match total {
            Some(t) => {
                let counts = match unit {
                    Unit::Bytes => "{bytes}/{total_bytes} ({bytes_per_sec})",
                    Unit::Items => "{pos}/{len}",
                };
                let template = format!("{{msg:40}} [{{bar:30}}] {counts} {{elapsed}}");
                let style = ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
                ProgressBar::new(t).with_style(style.progress_chars("=> "))
            }
            None => {
                let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                let bar = ProgressBar::new_spinner().with_style(style);
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            }
        };
        let bar = multi.add(bar.with_message(label.to_string()));
        Box::new(Bar(bar))
    }
}
