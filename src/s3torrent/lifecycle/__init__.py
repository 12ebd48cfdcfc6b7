"""Bucket lifecycle: the rules (values and S3's validation), the pure evaluator that turns
rules and an object's facts into an action, and the background worker that applies them."""
