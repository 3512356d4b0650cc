"""``testbed watch``: a live web page of a run (issue 18, item 1).

``model`` turns a run's files into what the page shows (pure, unit-tested), ``server``
follows the files and serves ``static/index.html`` with server-sent events.
"""
