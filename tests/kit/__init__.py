"""The test kit: one place for the fakes and fixtures the suite shares.

- :mod:`tests.kit.clock`: a settable fake clock for time-injected code;
- :mod:`tests.kit.mosquitto`: a private Mosquitto (own port, password file, ACL) per test module;
- :mod:`tests.kit.services`: a Redis namespace dropped after the test, a Kafka consume helper;
- :mod:`tests.kit.customers`: ``make_customer(**overrides)``.
"""
