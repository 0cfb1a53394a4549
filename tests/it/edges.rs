//! The edges of the offset contract and of shutdown (the hardening issue):
//! each test names the item it proves.

use std::time::Duration;

use crate::harness::*;
use crate::replica::Replica;
use crate::tansu::Tansu;

/// Hardening #13: SIGTERM finishes when the broker is gone. Closing the
/// consumer (leaving the group) gets only what is left of `shutdown_grace`;
/// past it the replica exits anyway, non-zero, saying why — and the rows it
/// committed stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_gone_exits_within_the_grace() {
    const ROWS: usize = 2_000;
    let (url, client) = fresh_db("edge_sigterm_no_broker").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let broker = Tansu::start();
    broker.create_topic("orders", 2).await;
    let end = broker.produce_all("orders", orders(ROWS, 2, 50)).await;
    let yaml = format!(
        "{}shutdown_grace: 4s\n",
        orders_config(&broker.bootstrap, &url, "orders", "edge13", "")
    );
    let replica = Replica::spawn(&yaml);
    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    drop(broker);
    let (status, took, logs) = replica.terminate().await;
    assert!(
        took < Duration::from_secs(8),
        "exit took {took:?} with a 4s grace:\n{logs}"
    );
    assert_ne!(
        status.code(),
        Some(0),
        "a close that timed out is not clean:\n{logs}"
    );
    assert!(
        logs.contains("could not leave the consumer group within shutdown_grace"),
        "{logs}"
    );
    assert_orders_exact(&client, ROWS as i64).await;
    assert_eq!(stored_offsets(&client, "orders").await, end);
}

/// Hardening #5: an UNLOGGED target loses its rows on a Postgres crash
/// while the (logged) offsets survive, so it is refused at start-up and by
/// `check` unless the route accepts that with `allow_unlogged: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlogged_target_is_refused_unless_allowed() {
    use sluice::config::Config;
    use sluice::sink::{plan_writers, PlanError};

    let (url, client) = fresh_db("edge_unlogged").await;
    client
        .batch_execute(&ORDERS_TABLE.replace("CREATE TABLE", "CREATE UNLOGGED TABLE"))
        .await
        .unwrap();
    let refused = Config::from_yaml(
        &orders_config("127.0.0.1:1", &url, "orders", "g", ""),
        |_| None,
    )
    .unwrap();
    match plan_writers(&refused, &client).await {
        Err(PlanError::Problems(p)) => {
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!(p[0].path, "routes[0].table");
            assert!(p[0].message.contains("UNLOGGED"), "{}", p[0].message);
            assert!(p[0].message.contains("allow_unlogged"), "{}", p[0].message);
        }
        other => panic!(
            "an unlogged target was accepted: {:?}",
            other.map(|w| w.len())
        ),
    }
    let allowed = Config::from_yaml(
        &orders_config(
            "127.0.0.1:1",
            &url,
            "orders",
            "g",
            "    allow_unlogged: true",
        ),
        |_| None,
    )
    .unwrap();
    assert!(plan_writers(&allowed, &client).await.is_ok());
    client
        .batch_execute("ALTER TABLE orders SET LOGGED")
        .await
        .unwrap();
    assert!(plan_writers(&refused, &client).await.is_ok());
}

/// Produces `records` (value, header name bytes, header value) to
/// partition 0 through librdkafka's C API: rust-rdkafka's producer only
/// takes header names as `&str`, and the point is a name that is not UTF-8.
fn produce_with_raw_header(bootstrap: &str, topic: &str, records: &[(Vec<u8>, Vec<u8>, Vec<u8>)]) {
    use std::ffi::CString;

    use rdkafka::bindings::{self as rd, rd_kafka_vtype_t as VT};
    use rdkafka::producer::{BaseProducer, Producer};
    use rdkafka::ClientConfig;

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let topic = CString::new(topic).unwrap();
    for (value, name, header) in records {
        let name = CString::new(name.clone()).unwrap();
        let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
        let vus = [
            vu(
                VT::RD_KAFKA_VTYPE_TOPIC,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    cstr: topic.as_ptr(),
                },
            ),
            vu(
                VT::RD_KAFKA_VTYPE_PARTITION,
                rd::rd_kafka_vu_s__bindgen_ty_1 { i32_: 0 },
            ),
            vu(
                VT::RD_KAFKA_VTYPE_MSGFLAGS,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    i: rd::RD_KAFKA_MSG_F_COPY,
                },
            ),
            vu(
                VT::RD_KAFKA_VTYPE_VALUE,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                        ptr: value.as_ptr() as *mut _,
                        size: value.len(),
                    },
                },
            ),
            vu(
                VT::RD_KAFKA_VTYPE_HEADER,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                        name: name.as_ptr(),
                        val: header.as_ptr() as *const _,
                        size: header.len() as isize,
                    },
                },
            ),
        ];
        // SAFETY: every pointer outlives the call; librdkafka copies the
        // value (F_COPY) and the header before it returns.
        let error = unsafe {
            rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len())
        };
        assert!(error.is_null(), "produceva failed");
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Hardening #6: a header name that is not UTF-8 used to panic the worker
/// (rust-rdkafka's `Headers::get` unwraps `to_str`), leaving the partition
/// assigned with no worker and `/readyz` green. Header names are read as
/// bytes: such a record is written like any other, its mapped headers
/// intact, and a dead letter keeps the name byte-escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_kept_losslessly() {
    let (url, client) = fresh_db("edge_header").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    client
        .batch_execute("ALTER TABLE orders ADD COLUMN trace text")
        .await
        .unwrap();
    let kafka = crate::harness::kafka("orders", 1);
    let good = |seq: u32| format!(r#"{{"k":"key-0","seq":{seq},"amount":"1.00"}}"#).into_bytes();
    let odd_name = b"\xff\xfeodd".to_vec();
    let records = vec![
        (good(0), b"trace".to_vec(), b"t-0".to_vec()),
        (good(1), odd_name.clone(), b"v".to_vec()),
        (b"{not json".to_vec(), odd_name.clone(), b"w".to_vec()),
        (good(2), b"trace".to_vec(), b"t-2".to_vec()),
    ];
    let bootstrap = kafka.bootstrap_servers().to_owned();
    tokio::task::spawn_blocking(move || produce_with_raw_header(&bootstrap, "orders", &records))
        .await
        .unwrap();
    let sink = Sink::start(&orders_config(
        kafka.bootstrap_servers(),
        &url,
        "orders",
        "edge6",
        "      trace: $headers.trace",
    ));
    wait_drained(&client, "orders", &[(0, 4)].into(), Duration::from_secs(60)).await;
    assert_eq!(sink.metric("sluice_worker_panics_total"), 0.0);
    let rows: Vec<(i64, Option<String>)> = client
        .query("SELECT seq, trace FROM orders ORDER BY src_offset", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![(0, Some("t-0".into())), (1, None), (2, Some("t-2".into()))]
    );
    let dead = client
        .query_one(
            "SELECT \"offset\", header_keys, header_values FROM sluice.dead_letters",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(dead.get::<_, i64>(0), 2);
    assert_eq!(
        dead.get::<_, Vec<String>>(1),
        vec!["\\xff\\xfeodd".to_string()]
    );
    assert_eq!(dead.get::<_, Vec<Vec<u8>>>(2), vec![b"w".to_vec()]);
    sink.stop().await.expect("clean stop");
}

/// Hardening #8: a fenced worker that claims its partition again (the
/// other claim looked stale) while Postgres is unreachable used to retry
/// that claim past its own revoke: it then took the partition from its
/// legitimate new owner and failed to seek a partition it no longer had,
/// stopping the replica. The claim's retries watch the worker's own stop,
/// and the assignment is checked around the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reclaim_that_outlives_its_revoke_does_not_steal() {
    use crate::proxy::Proxy;

    let (url, client) = fresh_db("edge_reclaim").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = crate::harness::kafka("orders", 2);
    let all = orders(600, 2, 20);
    let first = produce_all(&kafka, "orders", all[..200].to_vec()).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    let config = |url: &str| {
        format!(
            "{}retry:\n  max_backoff: 500ms\n",
            orders_config(kafka.bootstrap_servers(), url, "orders", "edge8", "")
                .replace("group_id: edge8", "group_id: edge8\n  revoke_timeout: 2s")
        )
    };
    let a = Sink::start(&config(&proxied));
    wait_drained(&client, "orders", &first, Duration::from_secs(60)).await;

    // A claim by someone else that turns out stale: both rows change owner.
    client
        .execute(
            "UPDATE sluice.offsets SET owner = gen_random_uuid() WHERE group_id = 'edge8'",
            &[],
        )
        .await
        .unwrap();
    produce_all(&kafka, "orders", all[200..300].to_vec()).await;
    eventually(
        Duration::from_secs(30),
        "both workers fenced out",
        || async { (a.metric("sluice_fence_rejections_total") >= 2.0).then_some(()) },
    )
    .await;
    // A's workers wait out revoke_timeout, then claim again: Postgres is
    // gone for A meanwhile, and B joins and takes a partition.
    proxy.set_down(true);
    let b = Sink::start(&config(&url));
    eventually(
        Duration::from_secs(60),
        "B to be assigned a partition",
        || async { (b.metric("sluice_assigned_partitions") >= 1.0).then_some(()) },
    )
    .await;
    // Past A's revoke, with its claim still retrying.
    eventually(
        Duration::from_secs(60),
        "A to have given a partition up",
        || async { (a.metric("sluice_assigned_partitions") <= 1.0).then_some(()) },
    )
    .await;
    proxy.set_down(false);

    let end = produce_all(&kafka, "orders", all[300..].to_vec()).await;
    wait_drained(&client, "orders", &end, Duration::from_secs(90)).await;
    assert_orders_exact(&client, 600).await;
    b.stop().await.expect("B ran through");
    a.stop()
        .await
        .expect("A did not fail on a partition it no longer had");
}
