//! The hostile rows for the event streams: `GET /api/events` and `GET /stream`, their scopes,
//! and `Last-Event-ID` values that are not event ids.

use super::rows::{ANY_4XX, KIB, Row, STREAM, Targets, a_times, get, req};

/// `GET /api/events?task=`, `GET /stream?task=`, and `Last-Event-ID` values that are not event
/// ids.
pub(super) fn stream_rows(t: &Targets) -> Vec<Row> {
    let id = &t.review;
    let unknown = &t.unknown;
    let long_id = a_times(8 * KIB);
    let mut rows = Vec::new();
    for base in ["/api/events", "/stream"] {
        rows.extend([
            // Ids that are not UUIDs, and one no task has.
            // Fixed, was a bug (the nine 404 rows, on /stream only): 404 text/plain "There is no task with
            // that id…" (`html_events` answers `(status, message)`), not an HTML page.
            get(404, format!("{base}?task=nope")),
            get(404, format!("{base}?task=..")),
            get(404, format!("{base}?task=%2e%2e")),
            get(404, format!("{base}?task=..%2F..%2FCargo.toml")),
            get(404, format!("{base}?task={long_id}")),
            get(404, format!("{base}?task={unknown}")),
            get(404, format!("{base}?task={id}%00")),
            get(404, format!("{base}?task=%FF")),
            get(
                404,
                format!("{base}?task=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
            ),
            // Two scopes: which 4xx is a judgement call.
            // Fixed, was a bug (both bases): 400 text/plain "Failed to deserialize query string: duplicate
            // field `task`" (axum's Query rejection): not JSON on /api/events, not a page on
            // /stream.
            get(ANY_4XX, format!("{base}?task={id}&task={unknown}")),
            req(405, "POST", base.to_owned()).json("{}"),
            // Last-Event-ID values that are not ids: the stream starts from the current state.
            get(STREAM, base).last_event_id("abc"),
            get(STREAM, base).last_event_id("-1"),
            get(STREAM, base).last_event_id("99999999999999999999"),
            get(STREAM, base).last_event_id("1 2"),
            get(STREAM, base).last_event_id("1.5"),
            get(STREAM, base).last_event_id(""),
            get(STREAM, base).last_event_id(b"\xff\xfe".to_vec()),
            get(STREAM, base).last_event_id(a_times(4 * KIB)),
            // Ids never issued: far in the future, the largest u64 (a resync, not a wrap).
            get(STREAM, base).last_event_id("999999"),
            get(STREAM, base).last_event_id("18446744073709551615"),
            get(STREAM, base).last_event_id("0"),
            get(STREAM, format!("{base}?task={id}")).last_event_id("-1"),
            get(STREAM, format!("{base}?task={id}")).last_event_id("18446744073709551615"),
            get(STREAM, format!("{base}?task={id}")).last_event_id("1 2"),
            get(STREAM, format!("{base}?task=")).last_event_id("abc"),
        ]);
    }
    // The home page's stream: bad fields are 422; it starts where it is told, or resyncs.
    rows.extend([
        get(422, "/stream?view=nope"),
        get(422, "/stream?view=inbox&page=0"),
        get(422, "/stream?view=inbox&since=-1"),
        get(422, "/stream?view=inbox&since=%3Cscript%3E"),
        get(422, format!("/stream?view=inbox&q={}", a_times(2 * KIB))),
        get(422, format!("/stream?view=inbox&task={id}")),
        get(STREAM, "/stream?view=inbox&since=0"),
        get(STREAM, "/stream?view=inbox&since=18446744073709551615"),
        get(STREAM, "/stream?view=inbox&q=%3Cscript%3E").last_event_id("0"),
        get(STREAM, "/stream?view=inbox").last_event_id("999999"),
    ]);
    rows
}
