"""collabrl plugins by example: ``keyword_coverage`` (a metric), ``greetings`` (a task set),
``concise`` (a judge) and ``straight`` (a user simulator), registered as entry points in this
package's pyproject.toml. Installed, a config names them like built-ins; not installed, the same
objects are reachable as ``collabrl_example_plugin.metrics:KeywordCoverage`` and so on.
"""
