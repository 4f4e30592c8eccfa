// Produce one check-in to OKR Ledger's intake topic from Node.js (KafkaJS 2).
//   npm install kafkajs@2
//   KAFKA_BROKERS=localhost:9094 node examples/produce_checkin.js
// The key must be the org_id, with KafkaJS's DefaultPartitioner (murmur2, the same partition
// as Java's and kafka-python's): the worker rejects a record on another org's partition.
// The outcome (accepted, duplicate or rejected with a reason code) appears on okr.outcomes,
// keyed by the okr-submission-id header.
const { Kafka, Partitioners } = require("kafkajs");
const crypto = require("crypto");

const brokers = (process.env.KAFKA_BROKERS || "localhost:9094").split(",");
const topic = process.env.OKR_KAFKA_TOPIC_INTAKE || "okr.intake";

const checkIn = {
  type: "CheckInRecorded",
  org_id: process.env.ORG_ID || "demo",
  occurred_at: new Date().toISOString(),
  actor: "ci-bot@example.com",
  source: "kafkajs-example",
  source_event_id: process.env.SOURCE_EVENT_ID || "kafkajs-checkin-1", // retries count once
  data: { key_result_id: process.env.KEY_RESULT_ID || "kr-nps", value: 42, confidence: 0.7 },
};

async function main() {
  const kafka = new Kafka({ clientId: "okr-example", brokers });
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    // A retry can write the record twice; the ledger counts it once (same source_event_id).
    // On Apache Kafka you may add `idempotent: true`; Tansu 0.6 refuses KafkaJS's InitProducerId.
    maxInFlightRequests: 1,
  });
  await producer.connect();
  try {
    const submissionId = crypto.randomUUID();
    const [result] = await producer.send({
      topic,
      acks: -1,
      messages: [
        {
          key: checkIn.org_id,
          value: JSON.stringify(checkIn),
          headers: { "okr-submission-id": submissionId },
        },
      ],
    });
    console.log(JSON.stringify({ submissionId, partition: result.partition, offset: result.baseOffset }));
  } finally {
    await producer.disconnect();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
