//! `brindle-cni`: Brindle's CNI plugin. The runtime runs it with `CNI_COMMAND` & co. in the
//! environment and the network configuration on stdin; the result (or a CNI error object)
//! goes to stdout, the log to `<stateDir>/cni.log`. See `brindle::cni`.

use brindle::cni::{code, conf, run, CniError, Outcome};
use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let outcome = match read {
        Err(e) => Outcome {
            stdout: CniError::io(format!(
                "cannot read the network configuration from stdin: {e}"
            ))
            .to_json(conf::DEFAULT_VERSION),
            exit_code: 1,
        },
        Ok(_) => {
            // Never panic out: a panic becomes a CNI error like any other.
            std::panic::catch_unwind(|| run(&|k| std::env::var(k).ok(), &stdin)).unwrap_or_else(
                |p| {
                    let what = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let version = conf::sniff_version(&stdin)
                        .unwrap_or_else(|| conf::DEFAULT_VERSION.to_string());
                    Outcome {
                        stdout: CniError::new(code::INTERNAL, format!("internal error: {what}"))
                            .to_json(&version),
                        exit_code: 1,
                    }
                },
            )
        }
    };
    let mut out = std::io::stdout().lock();
    if !outcome.stdout.is_empty() {
        let _ = writeln!(out, "{}", outcome.stdout);
    }
    let _ = out.flush();
    std::process::exit(outcome.exit_code);
}
