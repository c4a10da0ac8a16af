"""Prompt templates: named, or any string holding ``{question}``.

    >>> t = get_template("boxed")
    >>> t.user.replace("{question}", "1+1?").endswith("within \\\\boxed{}.")
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.registry import did_you_mean

if TYPE_CHECKING:
    from reasonlab.engines import Engine

BOXED = "Please reason step by step, and put your final answer within \\boxed{}."


class PromptTemplate(BaseModel):
    """How a question becomes the text a model continues."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    user: str = Field(..., description="user message (or raw prompt) with a {question} slot")
    system: str | None = Field(None, description="system message; None keeps the chat template's own default")
    chat: bool = Field(True, description="apply the model's chat template; False continues `user` raw")

    def render(self, engine: Engine, question: str) -> str:
        # plain substitution, not str.format: templates are full of LaTeX braces like \boxed{}
        text = self.user.replace("{question}", question)
        if not self.chat:
            return text
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": text}
        ]
        return engine.render_chat(messages)


TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t
    for t in [
        PromptTemplate(name="boxed", user="{question}\n" + BOXED),
        PromptTemplate(name="plain", user="{question}"),
        # tool-integrated reasoning: the model is told its code runs (the tir strategy runs it)
        PromptTemplate(name="tir", user="{question}\nSolve the problem step by step. Where a computation helps, "
                       "write Python code in a ```python block; it will be run and its output shown to you in an "
                       "```output block. Put your final answer within \\boxed{}."),
        # for base models without a chat template
        PromptTemplate(name="completion", chat=False,
                       user="Question: {question}\nAnswer: Let's think step by step, and write the final "
                            "answer as \\boxed{answer}.\n"),
    ]
}


def get_template(name_or_text: str, system: str | None = None) -> PromptTemplate:
    """A registered template by name, or a custom one from text containing ``{question}``."""
    if "{question}" in name_or_text:
        return PromptTemplate(user=name_or_text, system=system)
    if name_or_text not in TEMPLATES:
        raise did_you_mean("prompt template", name_or_text, list(TEMPLATES))
    template = TEMPLATES[name_or_text]
    return template.model_copy(update={"system": system}) if system else template
