//! The plugin's log: `<stateDir>/cni.log`, appended to, one line per message. Never stdout
//! (stdout carries the result); a log that cannot be written is silently skipped.

use super::conf::LogLevel;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

pub struct Logger {
    file: Option<Mutex<File>>,
    level: LogLevel,
    /// `ADD default-web/eth0` etc., put on every line.
    context: String,
}

impl Logger {
    /// A logger that writes nothing.
    pub fn none() -> Logger {
        Logger {
            file: None,
            level: LogLevel::Error,
            context: String::new(),
        }
    }

    pub fn open(state_dir: &Path, level: LogLevel, context: String) -> Logger {
        let _ = std::fs::create_dir_all(state_dir);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.join("cni.log"))
            .ok()
            .map(Mutex::new);
        Logger {
            file,
            level,
            context,
        }
    }

    pub fn set_context(&mut self, context: String) {
        self.context = context;
    }

    pub fn log(&self, level: LogLevel, msg: &str) {
        if level > self.level {
            return;
        }
        let Some(file) = &self.file else { return };
        let line = format!(
            "{} {:<5} [{}] {}: {}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level.as_str(),
            std::process::id(),
            self.context,
            msg.replace('\n', " ")
        );
        if let Ok(mut f) = file.lock() {
            // One write per line: O_APPEND keeps lines of concurrent plugins whole.
            let _ = f.write_all(line.as_bytes());
        }
    }

    pub fn error(&self, msg: &str) {
        self.log(LogLevel::Error, msg)
    }

    pub fn warn(&self, msg: &str) {
        self.log(LogLevel::Warn, msg)
    }

    pub fn info(&self, msg: &str) {
        self.log(LogLevel::Info, msg)
    }

    pub fn debug(&self, msg: &str) {
        self.log(LogLevel::Debug, msg)
    }
}
