//! Server-Sent Events parsed as a browser parses them (CR, LF and CRLF all end a line), keeping
//! every field, so that a field forged by text which broke out of the server's framing shows.
//!
//! [`Events`](super::Events) reads streams as a well-behaved client does and would hide such a
//! field; this parser is fed the bytes [`raw`](super::raw) reads (`hostile.rs` uses it).

use std::collections::VecDeque;

#[derive(Default, Debug, Clone)]
pub struct RawEvent {
    pub ids: Vec<String>,
    pub names: Vec<String>,
    pub data: Vec<String>,
    /// Fields other than id, event and data (such as `retry`).
    pub other: Vec<String>,
}

impl RawEvent {
    /// The data lines, joined as a browser joins them.
    pub fn data(&self) -> String {
        self.data.join("\n")
    }

    pub fn id(&self) -> Option<u64> {
        match self.ids.as_slice() {
            [id] => id.parse().ok(),
            _ => None,
        }
    }

    /// One numeric id, one event name from `names`, no other fields.
    pub fn well_formed(&self, names: &[&str]) -> Result<u64, String> {
        let Some(id) = self.id() else {
            return Err(format!("not exactly one numeric id: {self:?}"));
        };
        match self.names.as_slice() {
            [name] if names.contains(&name.as_str()) => {}
            _ => return Err(format!("not exactly one event name of {names:?}: {self:?}")),
        }
        if !self.other.is_empty() {
            return Err(format!("unexpected fields: {self:?}"));
        }
        Ok(id)
    }
}

/// Turns the bytes of an event stream, fed as they arrive, into events.
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    current: RawEvent,
    started: bool,
    /// Events complete and not yet taken.
    pub ready: VecDeque<RawEvent>,
}

impl SseParser {
    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line();
                }
                b'\n' => self.end_line(),
                _ => self.line.push(byte),
            }
        }
    }

    fn end_line(&mut self) {
        let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
        if line.is_empty() {
            if std::mem::take(&mut self.started) {
                self.ready.push_back(std::mem::take(&mut self.current));
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        self.started = true;
        match name {
            "id" => self.current.ids.push(value),
            "event" => self.current.names.push(value),
            "data" => self.current.data.push(value),
            other => self.current.other.push(format!("{other}: {value}")),
        }
    }
}
