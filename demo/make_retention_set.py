"""Write `tunegate/evaluation/retention.jsonl`: short, varied, general instructions that have nothing to do with any
task a user tunes for (questions, rewrites, small reasoning, formatting, definitions, translation, chit-chat).

A tuned model's drift from its base is measured on these prompts (`tunegate/evaluation/drift.py`). They are
written for this project from the lists below (seeded, deterministic), so anyone may ship them; none is about
customer support, the demo's domain (a test checks the demo data holds none of them).

    python demo/make_retention_set.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tunegate" / "evaluation" / "retention.jsonl"

QUESTIONS = [
    "What is the capital of France?",
    "How many days are there in a leap year?",
    "Which planet is closest to the sun?",
    "What gas do plants take in from the air?",
    "How many legs does a spider have?",
    "What is the boiling point of water at sea level in Celsius?",
    "Who wrote the play Romeo and Juliet?",
    "What is the largest ocean on Earth?",
    "How many continents are there?",
    "What is the chemical symbol for gold?",
    "Which animal is known as the king of the jungle?",
    "What colour do you get when you mix blue and yellow?",
    "How many minutes are in an hour?",
    "What is the freezing point of water in Fahrenheit?",
    "Which instrument has black and white keys?",
    "What is the tallest mountain in the world?",
    "How many sides does a hexagon have?",
    "What do bees make?",
    "Which season comes after winter?",
    "What is the main language spoken in Brazil?",
    "How many strings does a standard guitar have?",
    "What is the opposite of 'ancient'?",
    "Which organ pumps blood through the body?",
    "What is the square root of 81?",
    "In which direction does the sun rise?",
    "What is a baby cat called?",
    "How many hours are in a day?",
    "What is the longest river in Africa?",
    "Which metal is liquid at room temperature?",
    "What shape has three sides?",
    "How many players are on a football (soccer) team on the field?",
    "What is the smallest prime number?",
    "Which bird is a symbol of peace?",
    "What is frozen water called?",
    "How many weeks are in a year?",
    "What is the currency of Japan?",
    "Which vitamin does sunlight help the body make?",
    "What is the plural of 'mouse'?",
    "What do caterpillars turn into?",
    "Which is heavier, a kilogram of feathers or a kilogram of stones?",
]
SENTENCES = [
    "The cat sleeps on the warm windowsill.",
    "We walk to the park every morning.",
    "She paints landscapes in her spare time.",
    "The river flows quietly through the valley.",
    "They bake bread on Sunday afternoons.",
    "The children play chess after school.",
    "He reads a novel before bed.",
    "The wind moves the tall grass.",
    "I write letters to my grandmother.",
    "The old clock ticks loudly in the hall.",
    "Our team practises twice a week.",
    "The baker opens the shop at dawn.",
    "Birds sing in the garden at sunrise.",
    "The students visit the museum.",
    "My brother fixes bicycles in the garage.",
    "The lighthouse guides ships at night.",
    "The farmer plants corn in the spring.",
    "Snow covers the quiet village.",
    "The choir sings in the old church.",
    "A fox crosses the frozen lake.",
]
REWRITES = [
    "Rewrite this sentence in the past tense: {s}",
    "Rewrite this sentence as a question: {s}",
    "Make this sentence more formal: {s}",
    "Rewrite this sentence in the future tense: {s}",
]
THINGS = [
    "a volcano",
    "photosynthesis",
    "a metaphor",
    "gravity",
    "a democracy",
    "an atom",
    "a haiku",
    "inflation",
    "a glacier",
    "a verb",
    "an eclipse",
    "a telescope",
    "recycling",
    "a rainbow",
    "an orchestra",
    "a desert",
    "a vaccine",
    "a compass",
    "a fossil",
    "a marathon",
    "a thermometer",
    "erosion",
    "a sonnet",
    "a comet",
    "a mammal",
    "a noun",
    "a harbour",
    "a calendar",
    "friction",
    "a bridge",
]
FORMATS = [
    "List three fruits as a bulleted list.",
    "Write the days of the week in alphabetical order.",
    "Write the word 'elephant' backwards.",
    "Give me a comma-separated list of five colours.",
    "Write the numbers from one to five in words.",
    "Put these words in alphabetical order: pear, apple, mango, banana.",
    "Write 'hello world' in capital letters.",
    "Number these steps: boil water, add tea, pour, wait.",
    "Write a title in title case for a story about a lost dog.",
    "Turn this into a JSON object with keys name and age: Alice is 30.",
    "Write three rhyming words for 'light'.",
    "Give a two-item numbered list of things to pack for the beach.",
    "Write the first four months of the year separated by semicolons.",
    "Count the vowels in the word 'education'.",
    "Write the word 'river' with a hyphen between each letter.",
    "Make a markdown table with two columns: animal and sound, for a cow and a duck.",
    "Write a six-word story about the sea.",
    "Shorten this to five words: The weather today is sunny and pleasantly warm.",
    "Write an acrostic for the word 'SUN'.",
    "Convert 3 hours into minutes and show the answer only.",
]
CHAT = [
    "Hi! How are you today?",
    "Tell me a fun fact about octopuses.",
    "What is a good name for a goldfish?",
    "Can you suggest a hobby I could start this weekend?",
    "Say something encouraging to someone learning to swim.",
    "What should I cook for a quick dinner?",
    "Tell me a short joke about vegetables.",
    "Recommend a board game for a family evening.",
    "What is a nice way to start the morning?",
    "Give me a tip for remembering new words.",
    "What could I write in a birthday card for a friend?",
    "Describe a sunset in one sentence.",
    "What is your favourite season, and why might people like it?",
    "Suggest a name for a small bakery.",
    "How can I make a houseplant happy?",
    "Tell me something interesting about the moon.",
    "What is a good stretch after sitting for a long time?",
    "Give me an idea for a picnic snack.",
    "Write a friendly greeting for a new neighbour.",
    "What is a polite way to decline an invitation?",
]
WORDS = ["apple", "thank you", "good morning", "house", "water", "friend", "book", "cat", "sun", "tree"]
LANGUAGES = ["Spanish", "French", "German", "Italian"]
PARAGRAPHS = [
    "Honeybees live in colonies with a single queen. Worker bees gather nectar and pollen, and the colony turns "
    "nectar into honey that feeds it through the winter.",
    "The Great Wall of China was built over many centuries. It stretches across mountains and deserts and was "
    "meant to protect against invasions from the north.",
    "Tides are caused mainly by the moon's gravity pulling on the oceans. Most coasts see two high tides and two "
    "low tides each day.",
    "Penguins are birds that cannot fly, but they are excellent swimmers. They use their wings as flippers and "
    "live mostly in the Southern Hemisphere.",
    "Paper was first made in China about two thousand years ago. The idea travelled along trade routes and "
    "reached Europe many centuries later.",
    "Bamboo is one of the fastest-growing plants in the world. Some kinds can grow almost a metre in a single day.",
    "The human heart beats around one hundred thousand times a day. It pumps blood that carries oxygen to every "
    "part of the body.",
    "Volcanoes form where molten rock rises through cracks in the Earth's crust. When pressure builds up, lava, "
    "ash and gas can erupt.",
    "Libraries lend books for free to their members. Many also offer computers, classes and quiet places to study.",
    "Camels can go for days without drinking water. Their humps store fat, which the body can use for energy.",
]


def arithmetic(rng: random.Random) -> list[str]:
    prompts = []
    for _ in range(12):
        a, b = rng.randint(11, 89), rng.randint(11, 89)
        prompts.append(f"What is {a} plus {b}?")
    for _ in range(8):
        a, b = rng.randint(3, 12), rng.randint(3, 12)
        prompts.append(f"What is {a} times {b}?")
    for _ in range(8):
        start, hours = rng.randint(1, 9), rng.randint(2, 5)
        prompts.append(f"A bus leaves at {start} am and the trip takes {hours} hours. When does it arrive?")
    for _ in range(6):
        apples, eaten = rng.randint(6, 20), rng.randint(1, 5)
        prompts.append(f"I have {apples} apples and eat {eaten}. How many are left?")
    for _ in range(6):
        a, b = rng.sample(range(2, 60), 2)
        prompts.append(f"Which is larger, {a} or {b}?")
    return prompts


def prompts() -> list[str]:
    rng = random.Random(2026)
    rewrites = [template.format(s=s) for s in SENTENCES for template in rng.sample(REWRITES, 2)]
    definitions = [f"Explain what {thing} is in one sentence." for thing in THINGS]
    translations = [f"How do you say '{word}' in {rng.choice(LANGUAGES)}?" for word in WORDS]
    summaries = [f"Summarize in one sentence: {paragraph}" for paragraph in PARAGRAPHS]
    every = QUESTIONS + rewrites + definitions + FORMATS + CHAT + translations + summaries + arithmetic(rng)
    every = list(dict.fromkeys(every))  # a random sum can come up twice
    rng.shuffle(every)
    return every


def main() -> None:
    lines = [json.dumps({"prompt": prompt}, ensure_ascii=False) for prompt in prompts()]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} prompts -> {OUT}")


if __name__ == "__main__":
    main()
