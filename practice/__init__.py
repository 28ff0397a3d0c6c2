"""Interview practice: question pool, answerability, grading, FSRS scheduling, coverage, export."""
