//! The schemas say what is written: required fields are exactly those every answer has, the
//! properties exactly those any answer may have, and the documented limits are the enforced
//! ones.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, PartialSchema, openapi::path::ParameterIn};

use super::super::api::{
    DeadlineBody, claims::ClaimBody, list::ListQuery, outside::WaitQuery, submit::SubmitBody,
};
use crate::{
    inbox::MAX_PER_PAGE,
    input::MAX_WAIT_SECS,
    model::{
        audit::Digest,
        status::{MAX_ATTEMPTS_LIMIT, MAX_TIMEOUT_SECS},
        task::{
            AttemptRecord, Claim, Decision, Outcome, ReviewTimeout, Task, TaskId, TimeoutPolicy,
            now,
        },
    },
};

fn schema_of<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).expect("a schema serializes")
}

/// The names of the fields `value` is written with.
fn written(value: &impl Serialize) -> BTreeSet<String> {
    match serde_json::to_value(value).expect("it serializes") {
        Value::Object(fields) => fields.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

/// `minimal` (every optional part absent) is written with exactly the schema's required
/// fields; `full` (every optional part present) with exactly its properties.
fn assert_schema_fits<T: PartialSchema + Serialize>(minimal: &T, full: &T) {
    let schema = schema_of::<T>();
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|name| name.as_str().expect("a name").to_owned())
        .collect();
    let properties: BTreeSet<String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    assert_eq!(required, written(minimal), "required fields of {schema}");
    assert_eq!(properties, written(full), "properties of {schema}");
}

#[test]
fn task_schemas_require_what_is_always_written_and_list_all_that_may_be() {
    let at = now();
    let record = AttemptRecord {
        attempt: 1,
        output: "draft".into(),
        decision: None,
        comment: None,
        edited_output: None,
        decided_at: None,
        decided_by: None,
        timed_out: false,
        seq: 0,
    };
    let full_record = AttemptRecord {
        decision: Some(Decision::Approved),
        comment: Some("fine".into()),
        edited_output: Some("edited".into()),
        decided_at: Some(at),
        decided_by: Some("ana".into()),
        timed_out: true,
        seq: 7,
        ..record.clone()
    };
    let claim = Claim {
        attempt: 1,
        token_sha256: Digest::of_text("token"),
        by: None,
        claimed_at: at,
        lease_expires_at: at,
    };
    let full_claim = Claim {
        by: Some("worker".into()),
        ..claim.clone()
    };
    let task = Task::new(TaskId::new(), "input".into(), 3, at);
    let full_task = Task {
        output: Some("output".into()),
        final_result: Some("result".into()),
        error: Some("error".into()),
        outcome: Some(Outcome::Approved),
        metadata: Some(crate::model::task::RawJson::compact(
            r#"{"source": "test"}"#,
        )),
        claim: Some(full_claim.clone()),
        failed_tries: 1,
        submitted_by: Some("sam".into()),
        cancelled_by: Some("ana".into()),
        review_timeout: Some(ReviewTimeout {
            seconds: 60,
            policy: TimeoutPolicy::Approve,
        }),
        review_deadline: Some(at),
        attempts: vec![full_record.clone()],
        callback_url: Some("https://hooks.example.com/cb".into()),
        ..task.clone()
    };
    assert_schema_fits(&task, &full_task);
    let delivery = crate::model::delivery::Delivery {
        id: uuid::Uuid::now_v7(),
        task_id: task.id,
        url: "https://hooks.example.com/".into(),
        shown_url: "https://hooks.example.com/".into(),
        kind: crate::model::delivery::Kind::Webhook,
        event_seq: 1,
        status: crate::model::delivery::DeliveryStatus::Pending,
        attempts: 0,
        last_status_code: None,
        last_error: None,
        next_try_at: None,
        created_at: at,
        finished_at: None,
        body: "{}".into(),
        while_waiting: None,
        round: 0,
    };
    assert_schema_fits(&delivery, &delivery);
    assert_schema_fits(&record, &full_record);
    assert_schema_fits(&claim, &full_claim);
}

#[test]
fn a_digest_is_documented_as_it_is_written() {
    let schema = schema_of::<Digest>();
    let pattern = schema["pattern"].as_str().expect("a pattern");
    let written = Digest::of_text("abc").to_string();
    assert_eq!(pattern, "^[0-9a-f]{64}$");
    assert!(written.len() == 64 && written.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(written, written.to_lowercase());
}

/// The documented bounds of the limits the input parsers enforce.
#[test]
fn documented_limits_are_the_enforced_ones() {
    let submit = schema_of::<SubmitBody>();
    assert_eq!(
        submit["properties"]["max_attempts"]["maximum"],
        MAX_ATTEMPTS_LIMIT
    );
    assert_eq!(
        submit["properties"]["review_timeout_secs"]["maximum"],
        MAX_TIMEOUT_SECS
    );
    let deadline = schema_of::<DeadlineBody>();
    assert_eq!(
        deadline["properties"]["extend_secs"]["maximum"],
        MAX_TIMEOUT_SECS
    );
    let claim = schema_of::<ClaimBody>();
    assert_eq!(claim["properties"]["wait_secs"]["maximum"], MAX_WAIT_SECS);
    let per_page = ListQuery::into_params(|| Some(ParameterIn::Query))
        .into_iter()
        .find(|p| p.name == "per_page")
        .expect("per_page");
    let per_page = serde_json::to_value(per_page).expect("it serializes");
    assert_eq!(per_page["schema"]["maximum"], MAX_PER_PAGE);
    let wait = WaitQuery::into_params(|| Some(ParameterIn::Query))
        .into_iter()
        .find(|p| p.name == "wait")
        .expect("wait");
    let wait = serde_json::to_value(wait).expect("it serializes");
    assert_eq!(wait["schema"]["maximum"], MAX_WAIT_SECS);
}
