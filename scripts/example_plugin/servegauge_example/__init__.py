"""Example servegauge plugins: `echo_openai` (API) and `example_questions` (dataset)."""
