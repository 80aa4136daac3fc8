"""Slot values and shared phrasings of the dialogues (all invented for this dataset; the company's own are in
``data/company.yaml``)."""

from __future__ import annotations

RECENT = ("yesterday", "on Monday", "on Tuesday", "last Wednesday", "on Friday", "two days ago", "this morning")
PAST = (
    "last week", "on Monday", "last Thursday", "a week ago", "five days ago", "on the 3rd", "on the 12th",
    "about ten days ago", "the day before yesterday",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

ASK_ORDER = (
    "Could you share your order number? It starts with {order_number_format}.",
    "What's your order number? You'll find it in your confirmation email.",
    "Which order is it? The order number is in your confirmation email and under My orders.",
    "Could you send me the order number, please?",
    "Can I have your order number? It looks like {order_number_format}.",
)
FORMAT_HINT = (
    "That doesn't look like one of our order numbers: they're {order_number_format}, e.g. "
    "{order_number_example}. You'll find yours in the confirmation email or under My orders.",
    "Hmm, our order numbers are always {order_number_format}, like {order_number_example}. "
    "Could you check your confirmation email and send it again?",
    "Sorry, I can't match that. Order numbers are {order_number_format} (e.g. {order_number_example}), "
    "shown at the top of your confirmation email.",
)
THANKS = (
    "Thanks!", "Thank you so much.", "Great, thanks for your help.", "perfect, thank you", "Ok, thanks.",
    "Brilliant, cheers!", "That's all I needed, thanks.", "thx", "Got it, thank you!", "Lovely, thanks a lot.",
)
WELCOME = (
    "You're welcome{n}! Have a lovely day.", "Happy to help{n}. Take care!",
    "My pleasure{n}. Enjoy the rest of your day!", "You're welcome{n}! If anything else comes up, just message us.",
    "Glad I could help{n}. Have a good one!", "Any time{n}!",
)
