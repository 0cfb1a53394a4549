//! Producing records with any header names through librdkafka's C API
//! (rust-rdkafka's producer only takes names as `&str`), and reading the
//! log back as sluice reads it: the truth each outcome is checked against.

use std::collections::HashMap;
use std::ffi::CString;
use std::time::{Duration, Instant};

use rdkafka::bindings::{self as rd, rd_kafka_vtype_t as VT};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sluice::record::Record;

use super::generate::Produce;

/// The log: (topic, partition, offset) to the record there.
pub type Log = HashMap<(String, i32, i64), Record>;

pub fn produce(bootstrap: &str, topic: &str, records: &[Produce]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // No duplicates on a retry: the log must hold each record once.
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let topic = CString::new(topic).expect("a topic without NUL");
    for record in records {
        let names: Vec<CString> = record
            .headers
            .iter()
            .map(|(name, _)| CString::new(name.clone()).expect("a header name without NUL"))
            .collect();
        let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
        let mem = |b: &[u8]| rd::rd_kafka_vu_s__bindgen_ty_1 {
            mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: b.as_ptr() as *mut _,
                size: b.len(),
            },
        };
        let mut vus = vec![
            vu(
                VT::RD_KAFKA_VTYPE_TOPIC,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    cstr: topic.as_ptr(),
                },
            ),
            vu(
                VT::RD_KAFKA_VTYPE_PARTITION,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    i32_: record.partition,
                },
            ),
            vu(
                VT::RD_KAFKA_VTYPE_MSGFLAGS,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    i: rd::RD_KAFKA_MSG_F_COPY,
                },
            ),
        ];
        if let Some(key) = &record.key {
            vus.push(vu(VT::RD_KAFKA_VTYPE_KEY, mem(key)));
        }
        if let Some(value) = &record.value {
            vus.push(vu(VT::RD_KAFKA_VTYPE_VALUE, mem(value)));
        }
        if let Some(ms) = record.timestamp {
            vus.push(vu(
                VT::RD_KAFKA_VTYPE_TIMESTAMP,
                rd::rd_kafka_vu_s__bindgen_ty_1 { i64_: ms },
            ));
        }
        for (name, (_, value)) in names.iter().zip(&record.headers) {
            let (val, size) = match value {
                Some(v) => (v.as_ptr() as *const _, v.len() as isize),
                None => (std::ptr::null(), 0),
            };
            vus.push(vu(
                VT::RD_KAFKA_VTYPE_HEADER,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                        name: name.as_ptr(),
                        val,
                        size,
                    },
                },
            ));
        }
        // SAFETY: every pointer outlives the call; librdkafka copies the
        // key, value (F_COPY) and headers before it returns.
        let error = unsafe {
            rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len())
        };
        assert!(error.is_null(), "produceva failed");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Reads partitions `0..partitions` of `topic` from the start until
/// `expected` records are in.
pub fn read_back(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Log {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("read-back-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Log::new();
    while log.len() < expected {
        assert!(
            Instant::now() < deadline,
            "read {} of {expected} back",
            log.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a message");
            log.insert(
                (topic.to_owned(), message.partition(), message.offset()),
                Record::from_message(&message),
            );
        }
    }
    log
}
