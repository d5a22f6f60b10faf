"""Small, rerunnable experiments that the tutorials show (each has a CLI writing a JSON + PNG
under benchmarks/results/ and a smaller budget for the notebook while it is graded)."""
