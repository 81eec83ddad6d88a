//! Real front proxies (nginx, Envoy, Traefik) run by the tests: finding their binaries, and a
//! running one that is stopped when dropped. A test whose proxy is not installed is skipped
//! with a reason, except on CI (`CI=true`), where `.ci/run` installs every one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program `name`: on `PATH`, in `fixed` places, or among the scripts of the `python3` on
/// `PATH` (where pip puts Envoy's and Traefik's wheels). `None` means skip the test (with the
/// reason printed); on CI a missing program fails it, naming how to install it.
pub fn program(name: &str, fixed: &[&str], install: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    let found = fixed
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or(on_path)
        .or_else(|| {
            python_scripts()
                .map(|dir| dir.join(name))
                .filter(|p| p.is_file())
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed, and CI=true requires it ({install})"
        );
        eprintln!("SKIPPED: {name} is not installed ({install})");
    }
    found
}

/// Where pip installs the scripts of the `python3` on `PATH`.
fn python_scripts() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(dir.trim()))
}

/// A proxy process, killed when dropped; its output goes to `log` in its directory.
pub struct External {
    child: Child,
    /// The proxy's own directory (configuration, log, temporary files).
    pub dir: tempfile::TempDir,
    name: &'static str,
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl External {
    /// Starts `command` (its output into `log` in `dir`) and waits until it listens on `port`.
    pub async fn start(
        name: &'static str,
        mut command: Command,
        dir: tempfile::TempDir,
        port: u16,
    ) -> Self {
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        let mut proxy = Self { child, dir, name };
        // Envoy and Traefik take a second or two to load on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return proxy;
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("{name} exited ({status}): {}", proxy.log());
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {port}: {}",
                proxy.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the proxy wrote so far (its own log and output).
    pub fn log(&self) -> String {
        let read = |file: &str| std::fs::read_to_string(self.dir.path().join(file));
        let mut text = read("log").unwrap_or_default();
        if let Ok(errors) = read("error.log") {
            text.push_str(&errors);
        }
        format!("{} log:\n{text}", self.name)
    }
}

/// `text` with each `(from, to)` replaced, every `from` required to be there: an example file
/// that no longer names what the test fills in fails the test instead of testing something else.
pub fn filled(text: &str, replacements: &[(&str, &str)]) -> String {
    replacements
        .iter()
        .fold(text.to_owned(), |text, (from, to)| {
            assert!(
                text.contains(from),
                "the configuration no longer holds {from:?}"
            );
            text.replace(from, to)
        })
}

/// A file of the repository's `examples/forward-auth` folder.
pub fn example(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/forward-auth")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
