"""Answer extraction and verification (knows nothing of engines)."""

from reasonlab.answers.extract import extract_answer, last_boxed, strip_think
from reasonlab.answers.normalize import AnswerType, normalize, to_number
from reasonlab.answers.verify import Grade, Verifier, VerifierConfig

__all__ = ["AnswerType", "Grade", "Verifier", "VerifierConfig", "extract_answer", "last_boxed",
           "normalize", "strip_think", "to_number"]
