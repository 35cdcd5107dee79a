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

/// Starts `command` so that it dies with this process, however this process ends (SIGKILL included, which no
/// drop survives): on Linux the kernel sends it SIGKILL when its parent dies (`PR_SET_PDEATHSIG`). The signal
/// follows the *thread* that forked the child, and tokio's blocking threads (where servers are usually started)
/// exit when idle: so every child is forked by one thread that lives as long as the process.
#[cfg(target_os = "linux")]
fn spawn_tied(command: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;
    use std::sync::{Mutex, OnceLock};

    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let parent = std::process::id() as libc::pid_t;
                    // SAFETY: the hook runs between fork and exec and only makes two async-signal-safe calls.
                    unsafe {
                        command.pre_exec(move || {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            // The parent died before the prctl: nobody would ever stop this child.
                            if libc::getppid() != parent {
                                return Err(std::io::Error::other("parent exited during spawn"));
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawn the testkit-spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

#[cfg(not(target_os = "linux"))]
fn spawn_tied(mut command: Command) -> std::io::Result<Child> {
    command.spawn()
}

/// A running child: stdout and stderr go to a log file, and dropping it kills the child (SIGKILL) and waits. It
/// dies with this process too ([`spawn_tied`]), so no server outlives a killed test or `s3kv-local`.
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
        command.stdin(Stdio::null()).stdout(file).stderr(err);
        let child = spawn_tied(command).map_err(|source| StartError::Spawn {
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
    fn a_child_dies_with_its_parent_even_on_sigkill() {
        // A shell (the parent) starts a sleeper through testkit, reports its pid, and is killed with SIGKILL.
        let exe = std::env::current_exe().unwrap();
        let mut parent = Command::new(exe)
            .args([
                "--exact",
                "process::tests::tied_child_helper",
                "--include-ignored",
                "--nocapture",
            ])
            .env("TESTKIT_TIED_CHILD", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(parent.stdout.take().unwrap());
        let mut line = String::new();
        let pid = loop {
            line.clear();
            assert_ne!(
                std::io::BufRead::read_line(&mut out, &mut line).unwrap(),
                0,
                "the helper printed no pid"
            );
            if let Some(pid) = line.trim().strip_prefix("tied child pid ") {
                break pid.parse::<u32>().unwrap();
            }
        };
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        parent.kill().unwrap();
        parent.wait().unwrap();
        // Reaped by init once the kernel has killed it: gone, or a zombie for an instant.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(), "the child {pid} outlived its parent");
    }

    /// The parent of [`a_child_dies_with_its_parent_even_on_sigkill`]: does nothing unless run by it.
    #[test]
    #[ignore = "run by a_child_dies_with_its_parent_even_on_sigkill"]
    fn tied_child_helper() {
        if std::env::var_os("TESTKIT_TIED_CHILD").is_none() {
            return;
        }
        let child = ChildServer::spawn("tied-sleeper", sh("sleep 300")).unwrap();
        println!("tied child pid {}", child.pid());
        std::thread::sleep(Duration::from_secs(300));
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
