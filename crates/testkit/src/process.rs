//! Child processes whose output is kept and that are always stopped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Why a server could not be started; the message carries the server's own output.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("{name} not found: {hint}")]
    Missing { name: String, hint: String },
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} exited with {status} before it answered{}", show(.output))]
    Exited {
        name: String,
        status: ExitStatus,
        output: String,
    },
    #[error("{name} did not answer within {waited:?} (last probe: {last}){}", show(.output))]
    NoAnswer {
        name: String,
        waited: Duration,
        last: String,
        output: String,
    },
}

impl StartError {
    /// Whether starting again may succeed: a server that lost a bind race exits, a missing program stays missing.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StartError::Exited { output, .. } if output.contains("in use"))
    }
}

fn show(output: &str) -> String {
    if output.trim().is_empty() {
        "; it printed nothing".to_owned()
    } else {
        format!("; its output:\n{output}")
    }
}

/// How much of a log a failure shows.
const TAIL_BYTES: u64 = 8 * 1024;

/// A running child: stdout and stderr go to a log file, and dropping it kills the child (SIGKILL) and waits.
/// When a test panics while the server runs, the drop prints the server's output to stderr, so a failure that
/// looks like the client's ("connection refused") shows what the server said.
#[derive(Debug)]
pub struct ChildServer {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildServer {
    /// Starts `command` with its output in a fresh log file. `name` is what messages call it.
    pub fn spawn(name: &str, mut command: Command) -> Result<Self, StartError> {
        let log = crate::temp_dir("log").join(format!("{}.log", name.replace('/', "_")));
        let file = File::create(&log).map_err(|source| StartError::Spawn {
            name: name.to_owned(),
            source,
        })?;
        let err = file.try_clone().map_err(|source| StartError::Spawn {
            name: name.to_owned(),
            source,
        })?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|source| StartError::Spawn {
                name: name.to_owned(),
                source,
            })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last few KiB of what the child printed.
    pub fn output(&self) -> String {
        tail(&self.log)
    }

    /// `Some` once the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Polls `probe` until it answers `Ok`, the child exits, or `timeout` passes. The probe returns what it saw
    /// on failure, for the message.
    pub fn wait_ready<T>(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut(&Self) -> Result<T, String>,
    ) -> Result<T, StartError> {
        let start = Instant::now();
        let mut last;
        loop {
            if let Some(status) = self.exited() {
                return Err(StartError::Exited {
                    name: self.name.clone(),
                    status,
                    output: self.output(),
                });
            }
            match probe(self) {
                // Answered, and still ours: a child that lost its bind exits, and the answer came from elsewhere.
                Ok(value) if self.exited().is_none() => return Ok(value),
                Ok(_) => continue,
                Err(seen) => last = seen,
            }
            if start.elapsed() > timeout {
                return Err(StartError::NoAnswer {
                    name: self.name.clone(),
                    waited: timeout,
                    last,
                    output: self.output(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the child (SIGKILL: nothing is saved that was not on disk already) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let exited = self.exited();
        self.kill();
        if std::thread::panicking() {
            let state = exited.map_or("was still running".to_owned(), |s| {
                format!("had exited with {s}")
            });
            eprintln!(
                "--- {} (pid {}) {state}; its output ({}):\n{}\n---",
                self.name,
                self.child.id(),
                self.log.display(),
                self.output()
            );
        } else if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(TAIL_BYTES);
    let _ = file.seek(SeekFrom::Start(from));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if from > 0 {
        format!("[… {from} earlier bytes in {}]\n{text}", path.display())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn a_child_that_exits_fails_the_wait_with_its_output() {
        let mut child =
            ChildServer::spawn("doomed", sh("echo 'Address already in use' >&2; exit 3")).unwrap();
        let err = child
            .wait_ready(Duration::from_secs(5), |_| Err::<(), _>("no answer".into()))
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("doomed exited with"), "{message}");
        assert!(message.contains("Address already in use"), "{message}");
        assert!(err.is_retryable());
    }

    #[test]
    fn a_child_that_never_answers_times_out_with_the_last_probe() {
        let mut child = ChildServer::spawn("sleeper", sh("echo starting; sleep 30")).unwrap();
        let err = child
            .wait_ready(Duration::from_millis(200), |_| {
                Err::<(), _>("refused".into())
            })
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("did not answer"), "{message}");
        assert!(
            message.contains("refused") && message.contains("starting"),
            "{message}"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn dropping_a_child_kills_it() {
        let child = ChildServer::spawn("sleeper", sh("sleep 30")).unwrap();
        let pid = child.pid();
        drop(child);
        // wait() in drop reaped it, so nothing of it is left.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
