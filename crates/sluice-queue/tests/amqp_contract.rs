//! The queue contract (`sluice_queue::contract`) on a real RabbitMQ:
//! amqp://guest:guest@127.0.0.1:5672/%2f, or `SLUICE_AMQP_URL`. Each
//! scenario runs under its own random prefix, deleted afterwards.

mod support;

sluice_queue::queue_contract_tests!(support::AmqpBackend);
