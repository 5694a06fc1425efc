"""The paper's analyses over finished runs: emergent heads, frequency, cohorts, E scores, training
dynamics, retention and churn, think on/off, as one report (`sparks compare`)."""
