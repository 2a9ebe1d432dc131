"""The MQTT→Kafka bridge, the Faust app, and the Redis repositories it decides with."""
