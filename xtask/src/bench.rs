//! `cargo xtask bench www-unix`: requests per second and tail latency of
//! the www example, beside nginx measured in the same run.
//!
//! The reference is Debian's nginx serving the same `htdocs/` with one
//! worker process (www-unix runs one event loop on one thread), access
//! logging off and unlimited keep-alive requests, configured from a file
//! generated in a temporary directory. nginx is the static server people
//! know and deploy, so the ratio says something to a reader; a server of
//! our own as the reference would not.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{apt, workspace_root, TaskError};

/// The file requested: small, so the figure is about the request path.
const PATH: &str = "/index.html";
/// wrk's settings: two threads (the machine has two cores), 64 keep-alive
/// connections, 10 seconds.
const WRK_ARGS: &[&str] = &["-t2", "-c64", "-d10s", "--latency"];
/// Runs of wrk per server, alternating between them.
const ROUNDS: usize = 2;

/// A child process killed when dropped, so no server outlives the run.
struct Server {
    name: String,
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(name: &str, mut command: Command, port: u16) -> Result<Server, TaskError> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut server = Server { name: name.to_string(), child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("{name} exited ({status}) before listening on port {port}"));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{name} did not listen on port {port} within 20 s"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        server.check()?;
        Ok(server)
    }

    /// One request, so that a misconfigured server is not measured
    /// answering 404s quickly.
    fn check(&self) -> Result<(), TaskError> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| format!("{}: connect: {e}", self.name))?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        write!(stream, "GET {PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .map_err(|e| format!("{}: send a request: {e}", self.name))?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).map_err(|e| format!("{}: read the response: {e}", self.name))?;
        if !response.starts_with(b"HTTP/1.1 200") {
            let head = String::from_utf8_lossy(&response[..response.len().min(200)]).into_owned();
            return Err(format!("{} answered GET {PATH} with {head:?}, not 200", self.name));
        }
        Ok(())
    }
}

/// What wrk measured.
struct Measured {
    requests_per_second: f64,
    p99_ms: f64,
}

fn free_port() -> Result<u16, TaskError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

pub(crate) fn www_unix() -> Result<ExitCode, TaskError> {
    apt::ensure(&["wrk", "nginx"])?;
    let root = workspace_root();
    // Other work on the machine skews both figures; the reader should know.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("unknown").to_string();

    println!("==> building www for unix (release)");
    let binary = crate::build_app("www", cargo_mirage::Target::Unix, true)?.path;

    let port = free_port()?;
    let mut www = Command::new(&binary);
    www.args(["-l", "warn", "--", "--port", &port.to_string()]);
    let www = Server::start("www-unix", www, port)?;

    let scratch = std::env::temp_dir().join(format!("mirage-bench-nginx-{}", std::process::id()));
    let nginx = start_nginx(&scratch, &root.join("examples/www/htdocs"));
    let measured = nginx.and_then(|(nginx, version)| {
        // Alternate and keep each server's best run, so that a burst of
        // other work on the machine does not decide the comparison.
        let mut ours: Option<Measured> = None;
        let mut reference: Option<Measured> = None;
        for _ in 0..ROUNDS {
            ours = Some(best(ours, measure(&www)?));
            reference = Some(best(reference, measure(&nginx)?));
        }
        Ok((ours, reference, version))
    });
    let _ = std::fs::remove_dir_all(&scratch);
    let (Some(ours), Some(reference), nginx_version) = measured? else {
        return Err("no measurement was made".into());
    };

    let wrk_version = version_line(Command::new("wrk").arg("-v"));
    // "wrk debian/4.1.0-3+b2 [epoll] Copyright ..." -> "wrk debian/4.1.0-3+b2".
    let wrk_version = wrk_version.split(" [").next().unwrap_or("wrk").to_string();
    let ratio = ours.requests_per_second / reference.requests_per_second;
    let report = format!(
        "| server | requests/s | p99 latency |\n|---|---:|---:|\n\
         | www-unix (release, one event loop) | {:.0} | {:.2} ms |\n\
         | {nginx_version} (one worker) | {:.0} | {:.2} ms |\n\n\
         www-unix / nginx: {ratio:.2}× the requests per second. \
         Load average (1 min) when the run began: {load}.\n",
        ours.requests_per_second, ours.p99_ms, reference.requests_per_second, reference.p99_ms,
    );
    println!("\n{report}");
    append_to_docs(&root.join("docs/benchmarks.md"), &report, &wrk_version)?;
    println!("appended to docs/benchmarks.md");
    Ok(ExitCode::SUCCESS)
}

/// Keeps the run with more requests per second.
fn best(previous: Option<Measured>, run: Measured) -> Measured {
    match previous {
        Some(p) if p.requests_per_second >= run.requests_per_second => p,
        _ => run,
    }
}

/// Starts nginx on a free port with a configuration written to `scratch`;
/// returns it with its version.
fn start_nginx(scratch: &Path, htdocs: &Path) -> Result<(Server, String), TaskError> {
    std::fs::create_dir_all(scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let port = free_port()?;
    let htdocs = htdocs.canonicalize().map_err(|e| format!("{}: {e}", htdocs.display()))?;
    let dir = scratch.display();
    let config = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n  sendfile on;\n  tcp_nodelay on;\n\
           keepalive_requests 1000000;\n  keepalive_timeout 60s;\n\
           client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n\
           uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    root {htdocs};\n    index index.html;\n  }}\n}}\n",
        htdocs = htdocs.display(),
    );
    let config_path = scratch.join("nginx.conf");
    std::fs::write(&config_path, config).map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let version = version_line(Command::new("nginx").arg("-v"));
    let mut command = Command::new("nginx");
    command.arg("-p").arg(scratch).arg("-c").arg(&config_path).arg("-e").arg(scratch.join("error.log"));
    Ok((Server::start("nginx", command, port)?, version))
}

/// The first line a program prints about its version (nginx writes it to
/// stderr, wrk to stdout), without the "version:" label.
fn version_line(command: &mut Command) -> String {
    let out = command.output().map(|o| {
        let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&o.stderr));
        text
    });
    let text = out.unwrap_or_default();
    let line = text.lines().next().unwrap_or("unknown version").trim();
    line.strip_prefix("nginx version: ").unwrap_or(line).to_string()
}

fn measure(server: &Server) -> Result<Measured, TaskError> {
    let url = format!("http://127.0.0.1:{}{PATH}", server.port);
    println!("==> wrk {} {url}   ({})", WRK_ARGS.join(" "), server.name);
    let out = Command::new("wrk").args(WRK_ARGS).arg(&url).output().map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() {
        return Err(format!(
            "wrk against {} failed ({}): {}",
            server.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_wrk(&text)
        .ok_or_else(|| format!("cannot find Requests/sec and the 99% latency in wrk's output for {}", server.name))
}

/// Reads "Requests/sec: N" and the "99% T" line of `--latency` output.
fn parse_wrk(text: &str) -> Option<Measured> {
    if text.contains("Non-2xx or 3xx responses") || text.contains("Socket errors") {
        // Errors make the figures meaningless (fast failures look fast).
        return None;
    }
    let requests_per_second =
        text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok())?;
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%"))?.trim();
    let number_end = p99.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (value, unit) = p99.split_at(number_end);
    let value: f64 = value.parse().ok()?;
    let p99_ms = match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    };
    Some(Measured { requests_per_second, p99_ms })
}

fn append_to_docs(path: &Path, report: &str, wrk_version: &str) -> Result<(), TaskError> {
    let mut doc = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !doc.contains("\n## www-unix\n") {
        doc.push_str(
            "\n## www-unix\n\n\
             The www example as a Linux process (host sockets, one event loop on one\n\
             thread) serving `/index.html` from its build-time store, against Debian's\n\
             nginx serving the same `htdocs/` with one worker, access log off, `sendfile`\n\
             and unlimited keep-alive requests. Both on loopback, measured one after\n\
             the other by `wrk -t2 -c64 -d10s --latency`, which shares the two cores\n\
             with the server; two rounds alternating between the servers, each\n\
             server's best round shown. Command: `cargo xtask bench www-unix`.\n",
        );
    }
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let _ = write!(doc, "\n### {date} ({wrk_version})\n\n{report}");
    std::fs::write(path, doc).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 10s test @ http://127.0.0.1:8080/index.html
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   1.02ms  310.11us   9.87ms   90.12%
    Req/Sec    31.10k     2.01k   35.00k    70.00%
  Latency Distribution
     50%    0.98ms
     75%    1.10ms
     90%    1.30ms
     99%  812.00us
  618870 requests in 10.00s, 690.21MB read
Requests/sec:  61887.00
Transfer/sec:     69.02MB
";

    #[test]
    fn wrk_output_is_read() {
        let m = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(m.requests_per_second, 61887.0);
        assert!((m.p99_ms - 0.812).abs() < 1e-9);
        let slow = WRK_OUTPUT.replace("812.00us", "1.50s");
        assert!((parse_wrk(&slow).unwrap().p99_ms - 1500.0).abs() < 1e-9);
    }

    #[test]
    fn wrk_output_with_errors_is_refused() {
        let bad = WRK_OUTPUT.replace("Requests/sec", "  Non-2xx or 3xx responses: 5\nRequests/sec");
        assert!(parse_wrk(&bad).is_none());
        assert!(parse_wrk("nothing here").is_none());
    }
}
