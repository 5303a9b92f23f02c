//! A minimal QMP client: enough to reset, stop and query a QEMU we started.
//!
//! QMP is line-delimited JSON over a unix socket: a greeting, `qmp_capabilities`, then one
//! command and its `return` (asynchronous events in between are skipped).

use boma_exec::say;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use camino::Utf8Path;
use serde_json::{Value, json};

use crate::VmError;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Run one QMP command on the socket at `socket` and return its `return` value.
pub fn execute(socket: &Utf8Path, command: &str) -> Result<Value, VmError> {
    say!("+ qmp {socket} {command}");
    let stream = UnixStream::connect(socket)
        .map_err(|e| VmError::Qmp(format!("cannot connect to {socket}: {e}")))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(qmp_io)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(qmp_io)?;
    let mut writer = stream.try_clone().map_err(qmp_io)?;
    let mut reader = BufReader::new(stream);

    let greeting = read_message(&mut reader)?;
    if greeting.get("QMP").is_none() {
        return Err(VmError::Qmp(format!("unexpected greeting: {greeting}")));
    }
    for request in [
        json!({"execute": "qmp_capabilities"}),
        json!({"execute": command}),
    ] {
        writeln!(writer, "{request}").map_err(qmp_io)?;
        loop {
            let message = read_message(&mut reader)?;
            if let Some(error) = message.get("error") {
                return Err(VmError::Qmp(format!("{command}: {error}")));
            }
            if let Some(value) = message.get("return") {
                if request["execute"] == command {
                    return Ok(value.clone());
                }
                break;
            }
            // An event ({"event": ...}): not ours to handle.
        }
    }
    unreachable!("the loop returns on the command's reply")
}

fn read_message(reader: &mut impl BufRead) -> Result<Value, VmError> {
    let mut line = String::new();
    let n = reader.read_line(&mut line).map_err(qmp_io)?;
    if n == 0 {
        return Err(VmError::Qmp("connection closed".into()));
    }
    serde_json::from_str(&line).map_err(|e| VmError::Qmp(format!("bad message {line:?}: {e}")))
}

fn qmp_io(e: std::io::Error) -> VmError {
    VmError::Qmp(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QEMU: greets, acknowledges capabilities, emits an event, then answers.
    #[test]
    fn skips_events_and_returns_the_reply() {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8PathBuf::from_path_buf(dir.path().join("qmp.sock")).unwrap();
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            writeln!(
                writer,
                r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#
            )
            .unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"));
            writeln!(writer, r#"{{"return": {{}}}}"#).unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert!(line.contains("query-status"));
            writeln!(writer, r#"{{"event": "RESET", "data": {{}}}}"#).unwrap();
            writeln!(
                writer,
                r#"{{"return": {{"status": "running", "running": true}}}}"#
            )
            .unwrap();
        });
        let value = execute(&path, "query-status").unwrap();
        assert_eq!(value["status"], "running");
        server.join().unwrap();
    }

    #[test]
    fn missing_socket_is_a_clear_error() {
        let err = execute(Utf8Path::new("/nonexistent/qmp.sock"), "quit").unwrap_err();
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }
}
