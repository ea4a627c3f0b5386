"""Benchmark runners: ShapeWorld suites, GenEval layout, WISE scoring."""
