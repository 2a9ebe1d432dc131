"""The test kit: one place for the fakes and fixtures the suite shares.

- :mod:`tests.kit.cli`: ``proxima(*args, env=...)``, the command run to its end;
- :mod:`tests.kit.clock`: settable fake clocks for time-injected code;
- :mod:`tests.kit.customers`: ``make_customer(**overrides)``;
- :mod:`tests.kit.kafka`: read a topic from its start, until enough records or until idle;
- :mod:`tests.kit.mosquitto`: a private Mosquitto (own port, password file, ACL, outages);
- :mod:`tests.kit.require`: a missing outside tool skips, or fails under `make test`;
- :mod:`tests.kit.services`: a Redis namespace dropped after the test.
"""
