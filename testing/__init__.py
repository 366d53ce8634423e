"""The one home of the test suite's shared helpers: import them explicitly (``from testing.uploads import
upload``); the shared pytest fixtures are the ``testing.fixtures`` plugin the root ``conftest.py`` loads.

* ``factories`` — tenants, API clients, the dashboard's cast (``People``).
* ``uploads`` — fixture audio, generated tones, the bad-input cases every endpoint must refuse.
* ``assertions`` — the API error shape, waiting for an event with a deadline.
* ``media`` — generated audio/video for the beat-sync and media tests.
* ``workers`` — real worker processes, a webhook receiver, the billing facts reliability tests assert on.
* ``servers`` — a private Redis, moto's S3 server; ``fake_stripe`` — a local Stripe API.
* ``dns`` — answers for test host names.
"""
