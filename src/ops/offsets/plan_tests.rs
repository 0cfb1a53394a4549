use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use uuid::Uuid;

use super::plan::{build, choose, Inputs};
use super::seek::Found;
use super::store::Row;
use super::target::Target;
use crate::kafka::log::LogBounds;
use crate::ops::OpsError;

fn row(offset: Option<i64>, cluster: Option<&str>, last_ms: Option<u64>) -> Row {
    Row {
        next_offset: offset,
        cluster_id: cluster.map(str::to_owned),
        owner: Uuid::from_u128(7),
        claimed_at: UNIX_EPOCH,
        updated_at: UNIX_EPOCH,
        last_record_at: last_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        halted_at_offset: None,
    }
}

fn logs(parts: &[(i32, i64, i64)]) -> BTreeMap<(String, i32), LogBounds> {
    parts
        .iter()
        .map(|(p, low, high)| {
            (
                ("t".to_string(), *p),
                LogBounds {
                    low: *low,
                    high: *high,
                },
            )
        })
        .collect()
}

fn inputs<'a>(
    target: Target,
    rows: &'a BTreeMap<(String, i32), Row>,
    logs: &'a BTreeMap<(String, i32), LogBounds>,
    risks: &[&str],
) -> Inputs<'a> {
    Inputs {
        target,
        overlap: Duration::from_secs(60),
        cluster_id: Some("green"),
        rows,
        logs,
        risks: risks.iter().map(|r| r.to_string()).collect(),
        accept_duplicates: false,
        dry_run: false,
    }
}

fn no_times(_: &str, _: i32, _: LogBounds, _: i64) -> Result<(i64, Found), OpsError> {
    panic!("no time is looked up")
}

fn refusal(result: Result<super::plan::Plan, OpsError>) -> String {
    match result {
        Err(OpsError::Plan(m)) => m,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn translate_looks_up_the_last_record_time_less_the_overlap() {
    let rows = BTreeMap::from([
        (("t".into(), 0), row(Some(300), Some("blue"), Some(100_000))),
        (("t".into(), 1), row(None, Some("blue"), None)),
    ]);
    let logs = logs(&[(0, 0, 1000), (1, 0, 10), (2, 0, 5)]);
    let mut asked = Vec::new();
    let plan = build(
        &inputs(Target::Translate, &rows, &logs, &[]),
        |t, p, b, ms| {
            asked.push((t.to_string(), p, b, ms));
            Ok((420, Found::Searched))
        },
    )
    .unwrap();
    assert_eq!(asked, [("t".into(), 0, logs[&("t".into(), 0)], 40_000)]);
    assert_eq!(plan.moved.len(), 1);
    let m = &plan.moved[0];
    assert_eq!((m.partition, m.to.next_offset), (0, Some(420)));
    assert_eq!(m.to.cluster_id.as_deref(), Some("green"));
    assert_eq!(m.found_by, "searched");
    // Offsets of different clusters are not compared.
    assert_eq!((m.skipped_records, m.reread_records), (None, None));
    let left: Vec<i32> = plan.left.iter().map(|l| l.partition).collect();
    assert_eq!(left, [1, 2], "no stored offset: start_from applies");
    let moves = plan.moves(&rows);
    assert_eq!(moves[0].was, Some(Some(300)));
    assert_eq!(moves[0].to, 420);
}

#[test]
fn translate_refuses_what_it_cannot_translate() {
    let rows = BTreeMap::from([
        (("t".into(), 0), row(Some(300), Some("green"), Some(1))),
        (("t".into(), 1), row(Some(9), Some("blue"), None)),
    ]);
    let logs = logs(&[(0, 0, 1000), (1, 0, 10)]);
    let m = refusal(build(
        &inputs(Target::Translate, &rows, &logs, &[]),
        |_, _, _, _| Ok((0, Found::TimeIndex)),
    ));
    assert!(
        m.contains("t[0]: its offset already belongs to cluster green"),
        "{m}"
    );
    assert!(
        m.contains("t[1]: its offset (9) has no last record time"),
        "{m}"
    );
    assert!(m.starts_with("nothing was changed"), "{m}");
}

#[test]
fn moves_on_one_log_count_what_they_skip_or_read_again() {
    let rows = BTreeMap::from([(("t".into(), 0), row(Some(50), Some("green"), None))]);
    let logs = logs(&[(0, 10, 100)]);
    let plan = build(
        &inputs(Target::Latest, &rows, &logs, &["r appends"]),
        no_times,
    )
    .unwrap();
    assert_eq!(plan.moved[0].to.next_offset, Some(100));
    assert_eq!(plan.moved[0].skipped_records, Some(50));
    assert!(plan.duplicates.is_empty(), "latest reads nothing again");
    let plan = build(&inputs(Target::Earliest, &rows, &logs, &[]), no_times).unwrap();
    assert_eq!(plan.moved[0].to.next_offset, Some(10));
    assert_eq!(plan.moved[0].reread_records, Some(40));
    assert!(
        plan.text().contains("reads 40 record(s) again"),
        "{}",
        plan.text()
    );
    let m = refusal(build(
        &inputs(
            Target::Offset(20),
            &rows,
            &logs,
            &["route r appends rows keyed by …"],
        ),
        no_times,
    ));
    assert!(m.contains("route r appends rows keyed by"), "{m}");
    assert!(m.contains("--accept-duplicates"), "{m}");
    let mut accepted = inputs(Target::Offset(20), &rows, &logs, &["route r appends"]);
    accepted.accept_duplicates = true;
    let plan = build(&accepted, no_times).unwrap();
    assert_eq!(plan.duplicates, ["route r appends"]);
    for outside in [9, 101] {
        let m = refusal(build(
            &inputs(Target::Offset(outside), &rows, &logs, &[]),
            no_times,
        ));
        assert!(
            m.contains(&format!("offset {outside} is outside the log (10..100")),
            "{m}"
        );
    }
    // The log end itself is a place: nothing left to read.
    let plan = build(&inputs(Target::Offset(100), &rows, &logs, &[]), no_times).unwrap();
    assert_eq!(plan.moved[0].to.next_offset, Some(100));
}

#[test]
fn choosing_partitions_refuses_what_the_brokers_do_not_have() {
    let all = logs(&[(0, 0, 1), (1, 0, 1)]).into_iter().collect();
    let chosen = choose(all, &["t".into()], &[1]).unwrap();
    assert_eq!(
        chosen.keys().cloned().collect::<Vec<_>>(),
        [("t".to_string(), 1)]
    );
    let all = logs(&[(0, 0, 1)]).into_iter().collect();
    assert!(matches!(
        choose(all, &["t".into()], &[3]),
        Err(OpsError::Usage(m)) if m == "--partition 3: t has no partition 3"
    ));
    let all = logs(&[(0, 0, 1)]).into_iter().collect();
    assert!(matches!(
        choose(all, &["u".into()], &[]),
        Err(OpsError::Plan(m)) if m.contains("--topic u: the brokers do not know the topic")
    ));
}

#[test]
fn a_move_reports_where_the_locked_row_really_was() {
    let rows = BTreeMap::from([(("t".into(), 0), row(Some(50), Some("green"), None))]);
    let logs = logs(&[(0, 10, 100)]);
    let mut plan = build(&inputs(Target::Latest, &rows, &logs, &[]), no_times).unwrap();
    assert_eq!(plan.moves(&rows)[0].was, Some(Some(50)));
    assert_eq!(plan.moves(&rows)[0].was_cluster.as_deref(), Some("green"));
    // A running replica wrote 20 more records before the row was locked.
    plan.started_from(&[Some(70)]);
    assert_eq!(plan.moved[0].from.as_ref().unwrap().next_offset, Some(70));
    assert_eq!(plan.moved[0].skipped_records, Some(30));
    assert!(
        plan.text().contains("skips 30 record(s)"),
        "{}",
        plan.text()
    );
}
