"""Write the demo customer-support dataset, with planted problems and a manifest of what was planted.

    python demo/make_support_dataset.py            # rewrites demo/data/ (seeded: same bytes every time)
    python demo/make_support_dataset.py --fine-grained demo/data/fine_grained [--rows 10000]

Outputs, all committed so the demo needs no generation step:
  demo/data/tickets.csv    ticket text → category label (columns: text, category)
  demo/data/replies.jsonl  chat conversations: customer message(s) → agent reply
  demo/data/planted.json   every planted problem with its file and line, and the counts a run must find
  demo/data/preferences.jsonl  preference pairs for DPO: a ticket → the right category vs a wrong one, a customer
                           message → a polite, helpful reply vs a curt one (its own seed: the files above do not
                           change with it); its planted problems and counts are under `preferences` in planted.json

`--fine-grained DIR` writes the many-label variant instead: DIR/tickets.csv, ~10k tickets over 42 intents
(`billing-double-charge`, `shipping-late`, ...; seven per category), each ticket one intent sentence among 0-2
distractor sentences of the same category that belong to no intent, with mildly skewed label frequencies. It
shows the loop learning beyond six labels (tests and bench/sweep_regret.py generate it; it is not committed).

Planted: exact duplicates (verbatim, re-cased, re-spaced), near duplicates (punctuation changed, one
word changed), empty and over-long texts, unknown labels, malformed CSV lines, invalid JSON lines,
wrong-typed fields, bad chat roles and turn order, empty replies.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from pathlib import Path
from typing import Any

SEED = 20261122
OUT_DIR = Path(__file__).parent / "data"
LABELS = ["billing", "shipping", "returns", "technical", "account", "product"]
TICKETS_PER_LABEL = 500
CONVERSATIONS = 600
# Distinct tickets stay below this word-bigram Jaccard, far under the 0.85 dedup threshold, so the
# only near duplicates in the data are the planted ones.
MAX_NATURAL_JACCARD = 0.5
# A one-word change in an n-word text keeps bigram Jaccard (n-3)/(n+1): n >= 36 keeps it >= 0.89.
MIN_WORDS_FOR_WORD_CHANGE = 36
MAX_PROMPT_CHARS = 2000  # matches deployments/demo.yaml data.validation.max_prompt_chars

PRODUCTS = [
    "AeroBlend 3000 blender",
    "Nimbus wireless earbuds",
    "TrailPro hiking backpack",
    "Lumina desk lamp",
    "Quartz smart watch",
    "Breeze air purifier",
    "Atlas standing desk",
    "Pixel-Go action camera",
    "Harbor coffee grinder",
    "Summit rain jacket",
    "Echo mini speaker",
    "Vertex gaming mouse",
    "Cedar cutting board set",
    "Nova robot vacuum",
    "Orbit phone stand",
    "Polar insulated bottle",
    "Zenith yoga mat",
    "Comet e-reader",
    "Ridge running shoes",
    "Aurora string lights",
    "Falcon drone kit",
    "Maple baby monitor",
    "Titan power bank",
    "Willow bed sheets",
    "Glacier mini fridge",
]
NAMES = ["Sam", "Priya", "Lukas", "Maria", "Chen", "Aisha", "Tom", "Elena", "Kenji", "Fatima", "Olu", "Grace"]
EMAIL_DOMAINS = ["mail.com", "inbox.org", "post.net"]
DEVICES = ["iPhone 15", "Pixel 8", "Galaxy S23", "iPad Air", "Windows 11 laptop", "MacBook Pro", "Chromebook"]
CARRIERS = ["UPS", "FedEx", "DHL", "USPS", "the local courier"]
OPENERS = [
    "Hi,",
    "Hello support team,",
    "Hey there.",
    "Good morning,",
    "To whom it may concern,",
    "Hi there,",
    "Hello,",
    "Dear Acme support,",
    "Urgent:",
    "Quick question.",
    "",
    "",
    "",
]
CLOSERS = [
    "Thanks.",
    "Thank you in advance.",
    "Please advise.",
    "Appreciate your help!",
    "Regards, {name}",
    "Cheers, {name}",
    "Please get back to me soon.",
    "This is really frustrating.",
    "",
    "",
    "",
]
SENTENCES = {
    "billing": [
        "I was charged {amount} twice for order #{order}.",
        "My credit card statement shows a charge of {amount} that I do not recognize.",
        "The invoice for my {plan} plan is higher than the price I signed up for.",
        "I cancelled my subscription on {date} but you still billed me this month.",
        "Can you send me a VAT invoice for the purchase I made on {date}?",
        "The promo code SAVE{pct} was not applied at checkout and I paid full price.",
        "Why did my monthly fee go up by {amount} without any notice?",
        "I need a refund of the duplicate payment, my bank says it went through on {date}.",
        "Your checkout page took my money but the order #{order} never showed up in my account.",
        "I would like to switch from monthly to annual billing to get the discount.",
        "My payment keeps getting declined even though the card works everywhere else.",
        "Please update the billing address on my account, the invoices still show my old flat.",
        "I was promised a {pct} percent discount by your sales rep and it is not on the bill.",
        "There is a pending authorization of {amount} that has not been released after {days} days.",
    ],
    "shipping": [
        "My order #{order} was supposed to arrive on {date} and it still has not shown up.",
        "The tracking number from {carrier} has not updated in {days} days.",
        "The package was marked as delivered but nothing was at my door.",
        "Can I change the delivery address for order #{order}? I am moving next week.",
        "The {product} arrived but the box was crushed and soaked.",
        "Do you ship to Canada, and how long does international delivery usually take?",
        "I paid for express shipping and it took {days} days, I want the shipping fee back.",
        "{carrier} says the parcel is stuck at customs, what paperwork do you need from me?",
        "Only half of my order arrived, the {product} is missing from the box.",
        "The courier left my parcel with a neighbour I do not know.",
        "Is it possible to pick up the order from a store instead of waiting for delivery?",
        "The estimated delivery date keeps moving back every time I check.",
        "I received someone else's package instead of my {product}.",
        "Please hold my shipment, I will be travelling until {date}.",
    ],
    "returns": [
        "I want to return the {product}, it does not fit my needs.",
        "How do I get a return label for order #{order}?",
        "I sent the {product} back on {date} and still have not received my refund.",
        "The {product} stopped working after {days} days, can I exchange it for a new one?",
        "Your return window says 30 days but the portal will not let me start a return.",
        "I received the wrong colour of the {product} and would like to swap it.",
        "Do I have to pay for return shipping if the item arrived damaged?",
        "The refund for my return was {amount} less than what I paid.",
        "Can I return a gift without the receipt? It was bought on {date}.",
        "The store refused my return even though I still have the original packaging.",
        "I would like store credit instead of a refund for the {product}.",
        "My return was marked as received by the warehouse but the status has not changed in {days} days.",
        "Is there a restocking fee for opened items like the {product}?",
        "I want to exchange the {product} for the bigger model and pay the difference.",
    ],
    "technical": [
        "The {product} will not pair with my {device} no matter what I try.",
        "After the latest firmware update the {product} keeps restarting.",
        "The app crashes on my {device} as soon as I open the settings page.",
        "I keep getting error code E{code} when I try to sync my data.",
        "The battery on the {product} drains completely in about {days} hours.",
        "The touchscreen on the {product} is unresponsive in the top corner.",
        "Bluetooth disconnects every few minutes while I am using the {product}.",
        "I followed the setup guide but the device never shows up on my wifi network.",
        "The companion app on my {device} shows the {product} as offline even though it is on.",
        "Factory reset did not fix the problem, the light just blinks red.",
        "Is there a way to roll back to the previous firmware version?",
        "The {product} makes a loud grinding noise when it starts.",
        "Voice commands stopped working after I changed my router.",
        "The screen flickers whenever the brightness is below half.",
    ],
    "account": [
        "I cannot log in on my {device}, the password reset email never arrives.",
        "Please delete my account {handle} and all the personal data you hold about me.",
        "Someone changed the email address on my account to {handle} on {date} without my permission.",
        "I want to merge my two accounts, {handle} and my work one, into a single login.",
        "Two-factor authentication codes stopped arriving on my {device} after {date}.",
        "How do I change the name shown on my profile from {name} to my full legal name?",
        "My account was locked after {days} failed login attempts and the unlock link has expired.",
        "I no longer have access to the phone number ending in {code} that is linked to my account.",
        "Please stop sending marketing emails to {handle}, unsubscribing on {date} did not work.",
        "I need a copy of all the data you have stored about {handle} for a privacy request.",
        "My {points} loyalty points disappeared from my account after {date}.",
        "I signed up as {handle} by mistake and cannot verify the account.",
        "The account page shows order #{order}, which belongs to another person, this looks like a privacy problem.",
        "How can I add {name} as a second user on our {plan} family account?",
        "The login page on my {device} just spins forever after I enter my password.",
        "I was logged out of every device on {date} and now the app says my session is invalid.",
    ],
    "product": [
        "Is the {product} compatible with the {device}?",
        "What is the difference between the {product} and the pro version?",
        "Does the {product} come with a warranty, and for how long?",
        "When will the {product} be back in stock?",
        "Is the {product} dishwasher safe?",
        "Can you tell me the exact dimensions and weight of the {product}?",
        "Are replacement parts for the {product} sold separately?",
        "Does the {product} work with 110 volt outlets?",
        "Is the {product} suitable for a child who is {days} years old?",
        "What materials is the {product} made of? I have a nickel allergy.",
        "Will there be a new colour of the {product} this year?",
        "Can the {product} be used outdoors in the rain?",
        "Is there a bundle deal if I buy two of the {product}?",
        "How loud is the {product} in decibels when it runs?",
    ],
}
REPLY_SENTENCES = [
    "Thanks for reaching out, {name}, and sorry for the trouble.",
    "I have looked into order #{order} and can see what happened.",
    "I have issued a refund of {amount}, which should appear within {days} business days.",
    "I have sent a prepaid return label to the email address on your account.",
    "Could you send us a photo of the {product} and the packaging so we can file a claim?",
    "I have escalated this to our logistics team and flagged it as urgent.",
    "Please try holding the power button for ten seconds and then pairing it again.",
    "Our engineers released a fix in firmware {version}, which you can install from the app.",
    "I have reset the security settings on your account, so you can log in again.",
    "For your privacy, I have removed the old email address and confirmed the new one.",
    "The {product} is covered by a two year warranty, so a replacement is on its way.",
    "It is expected back in stock around {date}, and I have added you to the notification list.",
    "I applied the discount retroactively and the difference of {amount} is credited to your card.",
    "If anything else comes up, just reply to this message and it will reach me directly.",
    "I am sorry this took longer than it should have.",
    "You can track the replacement with {carrier} once the label is created.",
    "I also added a {pct} percent voucher to your account for the inconvenience.",
    "Let me know if the problem continues after the update and we will swap the unit.",
]
SYSTEM_PROMPT = "You are a friendly, concise support agent for Acme Home & Outdoor."
WORD_SWAPS = {"the": "that", "my": "our", "is": "was", "and": "plus", "not": "never", "I": "we", "it": "this"}


def fill(template: str, rng: random.Random) -> str:
    values = {
        "amount": f"${rng.randint(5, 900)}.{rng.randint(0, 99):02d}",
        "order": str(rng.randint(100000, 999999)),
        "date": f"{rng.choice(['March', 'April', 'May', 'June', 'July', 'August'])} {rng.randint(1, 28)}",
        "plan": rng.choice(["Basic", "Plus", "Family", "Pro", "Business"]),
        "pct": str(rng.choice([10, 15, 20, 25, 30])),
        "days": str(rng.randint(2, 21)),
        "carrier": rng.choice(CARRIERS),
        "product": rng.choice(PRODUCTS),
        "device": rng.choice(DEVICES),
        "code": str(rng.randint(100, 999)),
        "name": rng.choice(NAMES),
        "version": f"{rng.randint(1, 4)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
        "handle": f"{rng.choice(NAMES).lower()}{rng.randint(1, 9999)}@{rng.choice(EMAIL_DOMAINS)}",
        "points": str(rng.randint(2, 90) * 50),
    }
    return template.format(**values)


def word_bigrams(text: str) -> set[str]:
    """The pipeline's shingles: lower-cased word bigrams with punctuation dropped."""
    words = [w for w in re.split(r"[^\w]+", text.lower()) if w]
    return {" ".join(words[i : i + 2]) for i in range(max(len(words) - 1, 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class DistinctTexts:
    """Rejects a new text too similar to one already accepted (brute force: a few thousand texts)."""

    def __init__(self) -> None:
        self.accepted: list[set[str]] = []

    def accept(self, text: str) -> bool:
        shingles = word_bigrams(text)
        if any(jaccard(shingles, other) >= MAX_NATURAL_JACCARD for other in self.accepted):
            return False
        self.accepted.append(shingles)
        return True


def make_ticket(label: str, rng: random.Random) -> str:
    sentences = [fill(s, rng) for s in rng.sample(SENTENCES[label], rng.randint(2, 4))]
    parts = [rng.choice(OPENERS), *sentences, fill(rng.choice(CLOSERS), rng)]
    return " ".join(part for part in parts if part)


def make_tickets(rng: random.Random) -> list[tuple[str, str]]:
    tickets, distinct = [], {label: DistinctTexts() for label in LABELS}
    for label in LABELS:
        made = 0
        while made < TICKETS_PER_LABEL:
            text = make_ticket(label, rng)
            if distinct[label].accept(text):
                tickets.append((text, label))
                made += 1
    rng.shuffle(tickets)
    return tickets


def make_conversation(rng: random.Random) -> list[dict[str, str]]:
    label = rng.choice(LABELS)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}] if rng.random() < 0.5 else []
    for _turn in range(2 if rng.random() < 0.2 else 1):
        messages.append({"role": "user", "content": make_ticket(label, rng)})
        reply = " ".join(fill(s, rng) for s in rng.sample(REPLY_SENTENCES, rng.randint(2, 4)))
        messages.append({"role": "assistant", "content": reply})
    return messages


def conversation_text(messages: list[dict[str, str]]) -> str:
    """Same text the pipeline compares for chat rows: rendered earlier turns + the final reply."""
    prompt = "\n".join(f"{m['role']}: {m['content']}" for m in messages[:-1])
    return prompt + "\n" + messages[-1]["content"]


def change_case(text: str, rng: random.Random) -> str:
    return rng.choice([text.upper(), text.lower(), text.swapcase()])


def change_whitespace(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    spot = rng.randrange(1, len(words))
    return "  " + " ".join(words[:spot]) + "   " + " ".join(words[spot:]) + " \t"


def change_punctuation(text: str, rng: random.Random) -> str:
    """Punctuation at word boundaries only, so the words (and shingles) stay the same."""
    changed = re.sub(r",(\s)", r"\1", text) if rng.random() < 0.5 else re.sub(r"\.(\s|$)", r"!\1", text)
    return changed if changed != text else text + "!!"


def change_one_word(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    swappable = [i for i, w in enumerate(words) if w in WORD_SWAPS and 3 <= i < len(words) - 3]
    index = rng.choice(swappable) if swappable else len(words) // 2
    words[index] = WORD_SWAPS.get(words[index], "really")
    return " ".join(words)


def plant_duplicates(rows: list, rng: random.Random, plan: dict[str, int], text_of, with_text) -> list[dict]:
    """Insert variants of earlier rows after them; returns one manifest entry per planted row (by object)."""
    planted = []
    variants = {
        "copy": (lambda t, r: t, "exact"),
        "case": (change_case, "exact"),
        "whitespace": (change_whitespace, "exact"),
        "punctuation": (change_punctuation, "near"),
        "word_changed": (change_one_word, "near"),
    }
    used = set()
    for kind, count in plan.items():
        change, expected = variants[kind]
        for _ in range(count):
            while True:
                original = rng.randrange(len(rows) // 2)
                long_enough = len(text_of(rows[original]).split()) >= MIN_WORDS_FOR_WORD_CHANGE
                if original not in used and (kind != "word_changed" or long_enough):
                    break
            used.add(original)
            variant = with_text(rows[original], change(text_of(rows[original]), rng))
            planted.append({"row": variant, "original": rows[original], "variant": kind, "expected": expected})
    for entry in planted:
        position = rng.randrange(rows.index(entry["original"]) + 1, len(rows) + 1)
        rows.insert(position, entry["row"])
    return planted


def write_tickets(rng: random.Random) -> dict:
    tickets = [list(t) for t in make_tickets(rng)]
    duplicates = plant_duplicates(
        tickets,
        rng,
        {"copy": 40, "case": 15, "whitespace": 15, "punctuation": 20, "word_changed": 20},
        text_of=lambda row: row[0],
        with_text=lambda row, text: [text, row[1]],
    )
    problems = []
    for _ in range(6):
        problems.append(([rng.choice(["", "   ", "\t"]), rng.choice(LABELS)], "empty_text"))
    for _ in range(8):
        label = rng.choice(LABELS)
        log_lines = " ".join(
            f"[{rng.randint(10, 23)}:{rng.randint(10, 59)}] ERR module={rng.randint(1, 99)} retry" for _ in range(160)
        )
        problems.append(([make_ticket(label, rng) + " Log follows: " + log_lines, label], "over_long_text"))
    for bad_label in [
        "refunds",
        "other",
        "complaint",
        "feedback",
        "Billing",
        "shipping ",
        "warranty",
        "spam",
        "refunds",
        "other",
        "misc",
        "sales",
    ]:
        problems.append(([make_ticket(rng.choice(LABELS), rng), bad_label], "unknown_label"))
    malformed = [
        "My card was charged twice, please help,billing",
        "the app is broken, it crashes, every time,technical",
        "where is my parcel",
        "Refund please,returns,,",
        "cannot log in,account,urgent,please",
    ]
    for row, kind in problems:
        tickets.insert(rng.randrange(len(tickets) + 1), row)
        row.append(kind)
    for line in malformed:
        tickets.insert(rng.randrange(len(tickets) + 1), ["__MALFORMED__", line])
    text, lines = render_csv(tickets)
    (OUT_DIR / "tickets.csv").write_text(text, encoding="utf-8")
    line_of = {id(row): line for row, line in zip(tickets, lines, strict=True)}
    return {
        "rows": len(tickets),
        "duplicates": duplicate_manifest(duplicates, line_of),
        "quarantined": sorted(
            [{"line": line_of[id(row)], "problem": kind} for row, kind in problems]
            + [
                {"line": line_of[id(row)], "problem": "malformed_csv_line"}
                for row in tickets
                if row[0] == "__MALFORMED__"
            ],
            key=lambda entry: entry["line"],
        ),
    }


def render_csv(rows: list[list[str]]) -> tuple[str, list[int]]:
    """CSV text and the physical line where each record starts (quoted newlines span lines)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "category"])
    lines, line = [], 2
    for row in rows:
        start = buffer.tell()
        if row[0] == "__MALFORMED__":
            buffer.write(row[1] + "\n")
        else:
            writer.writerow(row[:2])
        lines.append(line)
        line += buffer.getvalue()[start:].count("\n")
    return buffer.getvalue(), lines


def write_replies(rng: random.Random) -> dict:
    distinct, conversations = DistinctTexts(), []
    while len(conversations) < CONVERSATIONS:
        messages = make_conversation(rng)
        if distinct.accept(conversation_text(messages)):
            conversations.append({"messages": messages})
    duplicates = plant_duplicates(
        conversations,
        rng,
        {"copy": 10, "word_changed": 5},
        text_of=lambda row: row["messages"][-1]["content"],
        with_text=lambda row, text: {"messages": [*row["messages"][:-1], {"role": "assistant", "content": text}]},
    )
    user_first = {"role": "user", "content": make_ticket("billing", rng)}
    reply = {"role": "assistant", "content": fill(REPLY_SENTENCES[2], rng)}
    problems = [
        ('{"messages": [{"role": "user", "content": "my order never came"}, {"role": "assis', "invalid_json"),
        ('{"messages": [}', "invalid_json"),
        ("not json at all, just a pasted email", "invalid_json"),
        ({"messages": [user_first, {"role": "assistant", "content": 42}]}, "wrong_type"),
        ({"messages": "user: hello / assistant: hi"}, "wrong_type"),
        ({"messages": [reply, user_first]}, "bad_turn_order"),
        ({"messages": [user_first, {"role": "user", "content": "hello??"}, reply]}, "bad_turn_order"),
        ({"messages": [{"role": "customer", "content": make_ticket("shipping", rng)}, reply]}, "invalid_role"),
        ({"messages": [user_first, {"role": "agent", "content": "We are on it."}]}, "invalid_role"),
        (
            {
                "messages": [
                    {"role": "user", "content": make_ticket("technical", rng)},
                    {"role": "assistant", "content": "  "},
                ]
            },
            "empty_reply",
        ),
    ]
    return write_jsonl_with_problems("replies.jsonl", conversations, problems, duplicates, rng)


def write_jsonl_with_problems(
    name: str, records: list[dict], problems: list[tuple[Any, str]], duplicates: list[dict], rng: random.Random
) -> dict:
    """Insert each planted problem at a random line (a string is written as the raw line), write OUT_DIR/name, and
    return its manifest: row count, planted duplicates and problems with the lines they ended on."""
    rows = list(records)
    for problem, kind in problems:
        rows.insert(rng.randrange(len(rows) + 1), {"__problem__": kind, "value": problem})
    lines = []
    for row in rows:
        value = row["value"] if "__problem__" in row else row
        lines.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    (OUT_DIR / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    line_of = {id(row): index for index, row in enumerate(rows, start=1)}
    return {
        "rows": len(rows),
        "duplicates": duplicate_manifest(duplicates, line_of),
        "quarantined": sorted(
            [{"line": line_of[id(row)], "problem": row["__problem__"]} for row in rows if "__problem__" in row],
            key=lambda entry: entry["line"],
        ),
    }


PREFERENCE_SEED = SEED + 1
CATEGORY_PAIRS, TONE_PAIRS = 500, 150
CURT_REPLIES = [
    "Not our problem.",
    "Read the FAQ.",
    "Wait like everyone else.",
    "We can't help with that.",
    "Try again later.",
    "Ask your bank.",
]


# A tone pair asks for a reply; a bare ticket asks for its category (as in tickets.csv). Without the request the
# two kinds of pair share one prompt form and disagree on the answer: DPO on them taught the SFT champion to answer
# category tickets with replies (exact match 0.86 -> 0.71 on the test pairs).
REPLY_REQUEST = "Write a reply to this customer message:"


def make_preference_pairs(rng: random.Random) -> list[dict[str, str]]:
    """Distinct pairs: a ticket with its category chosen over a wrong one, or a polite reply over a curt one."""
    distinct, pairs = DistinctTexts(), []
    while len(pairs) < CATEGORY_PAIRS + TONE_PAIRS:
        label = rng.choice(LABELS)
        prompt = make_ticket(label, rng)
        if not distinct.accept(prompt):
            continue
        if len(pairs) < CATEGORY_PAIRS:
            wrong = rng.choice([other for other in LABELS if other != label])
            pairs.append({"prompt": prompt, "chosen": label, "rejected": wrong})
        else:
            polite = " ".join(fill(s, rng) for s in rng.sample(REPLY_SENTENCES, rng.randint(2, 3)))
            reply_request = f"{REPLY_REQUEST} {prompt}"
            pairs.append({"prompt": reply_request, "chosen": polite, "rejected": rng.choice(CURT_REPLIES)})
    rng.shuffle(pairs)
    return pairs


def write_preferences(rng: random.Random) -> dict:
    """demo/data/preferences.jsonl with 3 exact duplicate pairs and 4 bad pairs planted; their manifest."""
    pairs = make_preference_pairs(rng)
    duplicates = plant_duplicates(
        pairs,
        rng,
        {"copy": 3},
        text_of=lambda row: row["rejected"],
        with_text=lambda row, text: {**row, "rejected": text},
    )
    problems = [
        ({**pairs[0], "rejected": pairs[0]["chosen"].upper()}, "chosen_differs_from_rejected"),
        ({**pairs[1], "rejected": pairs[1]["chosen"]}, "chosen_differs_from_rejected"),
        ({**pairs[2], "rejected": "   "}, "rejected_not_blank"),
        ({key: value for key, value in pairs[3].items() if key != "rejected"}, "rejected_present"),
    ]
    return write_jsonl_with_problems("preferences.jsonl", pairs, problems, duplicates, rng)


def duplicate_manifest(duplicates: list[dict], line_of: dict[int, int]) -> list[dict]:
    """Where each planted duplicate and its original ended up (file lines), and what dedup should do with it."""
    return [
        {
            "line": line_of[id(d["row"])],
            "original_line": line_of[id(d["original"])],
            "variant": d["variant"],
            "expected": d["expected"],
        }
        for d in duplicates
    ]


# The first seven templates of each category are intents; the rest are distractors that carry no label.
FINE_GRAINED_INTENTS = {
    "billing": ["double-charge", "unrecognized-charge", "price-mismatch", "charged-after-cancel", "vat-invoice",
                "promo-not-applied", "fee-increase"],
    "shipping": ["late", "tracking-stalled", "missing-delivery", "change-address", "damaged-box", "international",
                 "express-refund"],
    "returns": ["unwanted-item", "label-request", "refund-pending", "defect-exchange", "portal-blocked",
                "wrong-colour", "shipping-cost"],
    "technical": ["pairing", "reboot-loop", "app-crash", "sync-error", "battery-drain", "touchscreen",
                  "bluetooth-drops"],
    "account": ["password-reset", "deletion", "hijacked", "merge", "2fa-codes", "change-name", "locked"],
    "product": ["compatibility", "pro-comparison", "warranty", "restock", "dishwasher-safe", "dimensions",
                "spare-parts"],
}  # fmt: skip
FINE_GRAINED_SEED = 20261125
FINE_GRAINED_ROWS = 10_000


def fine_grained_labels() -> list[str]:
    return [f"{category}-{intent}" for category, intents in FINE_GRAINED_INTENTS.items() for intent in intents]


def make_fine_grained_ticket(category: str, intent: int, rng: random.Random) -> str:
    distractors = SENTENCES[category][len(FINE_GRAINED_INTENTS[category]) :]
    sentences = [fill(SENTENCES[category][intent], rng)]
    sentences += [fill(s, rng) for s in rng.sample(distractors, rng.randint(0, 2))]
    rng.shuffle(sentences)
    parts = [rng.choice(OPENERS), *sentences, fill(rng.choice(CLOSERS), rng)]
    return " ".join(part for part in parts if part)


def write_fine_grained(out_dir: Path, rows: int = FINE_GRAINED_ROWS, seed: int = FINE_GRAINED_SEED) -> Path:
    """DIR/tickets.csv: `rows` distinct tickets over the 42 intents; label i has weight 1 / (1 + 0.05 i), so the
    most frequent label is ~4.4% of rows and the rarest ~1.4%."""
    rng = random.Random(seed)
    labels = [(category, index) for category, intents in FINE_GRAINED_INTENTS.items() for index in range(len(intents))]
    weights = [1 / (1 + 0.05 * i) for i in range(len(labels))]
    seen, tickets = set(), []
    while len(tickets) < rows:
        category, index = rng.choices(labels, weights)[0]
        text = make_fine_grained_ticket(category, index, rng)
        if text not in seen:
            seen.add(text)
            tickets.append([text, f"{category}-{FINE_GRAINED_INTENTS[category][index]}"])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tickets.csv"
    path.write_text(render_csv(tickets)[0], encoding="utf-8")
    return path


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fine-grained", metavar="DIR", help="write the 42-label variant to DIR/tickets.csv")
    parser.add_argument("--rows", type=int, default=FINE_GRAINED_ROWS, help="rows of the fine-grained variant")
    args = parser.parse_args()
    if args.fine_grained:
        print(write_fine_grained(Path(args.fine_grained), args.rows))
        return
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    files = {"tickets.csv": write_tickets(rng), "replies.jsonl": write_replies(rng)}
    totals = {
        "rows_read": sum(f["rows"] for f in files.values()),
        "quarantined": sum(len(f["quarantined"]) for f in files.values()),
        "exact_duplicates": sum(d["expected"] == "exact" for f in files.values() for d in f["duplicates"]),
        "near_duplicates": sum(d["expected"] == "near" for f in files.values() for d in f["duplicates"]),
    }
    preferences = write_preferences(random.Random(PREFERENCE_SEED))
    manifest = {"seed": SEED, "labels": LABELS, "totals": totals, "files": files, "preferences": preferences}
    (OUT_DIR / "planted.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
