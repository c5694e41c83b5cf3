"""The engine's own words (hints on a reply that does not fit), per locale.
English is the fallback for a locale that has no entry."""

from __future__ import annotations

from conversations.replies import Problem

HINTS: dict[str, dict[Problem, str]] = {
    "en": {
        Problem.EMPTY: "Please type your answer.",
        Problem.NOT_A_NUMBER: "Please send a number from {low} to {high}.",
        Problem.NOT_WHOLE: "Please send a whole number from {low} to {high}.",
        Problem.OUT_OF_RANGE: "{value} is not on the scale. Please send a number from {low} to "
                              "{high}.",
        Problem.TOO_LONG: "That is {length} characters; please keep it within {limit}.",
        Problem.UNKNOWN_OPTION: "Please pick one of: {options}.",
        Problem.TOO_FEW: "Please pick at least {limit}.",
        Problem.TOO_MANY: "Please pick at most {limit}.",
        Problem.NOT_YES_NO: "Please answer yes or no.",
        Problem.NOT_TEXT: "I can only read text here.",
        Problem.STALE: "That question has already been answered.",
        Problem.CANNOT_SKIP: "This question needs an answer.",
        Problem.CANNOT_GO_BACK: "There is no earlier answer to change.",
        Problem.FINISHED: "This survey is finished. Thank you!",
        Problem.EXPIRED: "This survey has closed. Thank you all the same!",
    },
    "ru": {
        Problem.EMPTY: "Пожалуйста, напишите ответ.",
        Problem.NOT_A_NUMBER: "Пожалуйста, отправьте число от {low} до {high}.",
        Problem.NOT_WHOLE: "Пожалуйста, отправьте целое число от {low} до {high}.",
        Problem.OUT_OF_RANGE: "{value} — вне шкалы. Пожалуйста, отправьте число от {low} до "
                              "{high}.",
        Problem.TOO_LONG: "Это {length} символов; пожалуйста, уложитесь в {limit}.",
        Problem.UNKNOWN_OPTION: "Пожалуйста, выберите один из вариантов: {options}.",
        Problem.TOO_FEW: "Пожалуйста, выберите хотя бы {limit}.",
        Problem.TOO_MANY: "Пожалуйста, выберите не больше {limit}.",
        Problem.NOT_YES_NO: "Пожалуйста, ответьте «да» или «нет».",
        Problem.NOT_TEXT: "Здесь я понимаю только текст.",
        Problem.STALE: "На этот вопрос уже есть ответ.",
        Problem.CANNOT_SKIP: "На этот вопрос нужно ответить.",
        Problem.CANNOT_GO_BACK: "Нет предыдущего ответа, который можно изменить.",
        Problem.FINISHED: "Опрос завершён. Спасибо!",
        Problem.EXPIRED: "Опрос уже закрыт. Всё равно спасибо!",
    },
}

YES_NO = {"en": ("Yes", "No"), "ru": ("Да", "Нет")}
SKIP_HINT = {"en": "You can also send “skip”.", "ru": "Можно также отправить «пропустить»."}


def hint(problem: Problem, locale: str, optional: bool = False, **values: object) -> str:
    table = HINTS.get(locale, HINTS["en"])
    text = table[problem].format(**values)
    if optional and problem in (Problem.EMPTY, Problem.NOT_TEXT):
        text = f"{text} {SKIP_HINT.get(locale, SKIP_HINT['en'])}"
    return text
