"""The built-in prompt set: everyday tasks, each with instructions a checker can verify.

Written for this project (not taken from IFEval) and not tuned to any model. Ordered so that any
prefix of the list mixes instruction types.
"""

from __future__ import annotations

# (id, prompt, ((instruction type, arguments), ...))
PROMPTS: tuple[tuple[str, str, tuple[tuple[str, dict], ...]], ...] = (
    (
        "tea-lowercase",
        "Describe how to brew a good cup of green tea. Your entire answer must be in lowercase letters; "
        "no capital letters are allowed.",
        (("case:lowercase", {}),),
    ),
    (
        "bike-bullets",
        "Give advice for someone starting to commute by bicycle. Answer with exactly 4 bullet points, "
        "each line starting with '* '.",
        (("format:bullets", {"n": 4}),),
    ),
    (
        "volcano-words",
        "Explain what a volcano is in at most 40 words.",
        (("length:max_words", {"n": 40}),),
    ),
    (
        "city-json",
        "List three large cities in Japan with their approximate population. Give your whole answer as "
        "valid JSON and nothing else.",
        (("format:json", {}),),
    ),
    (
        "rain-commas",
        "Write a short description of a rainy afternoon in a city. Do not use any commas in your answer.",
        (("punctuation:no_commas", {}),),
    ),
    (
        "garden-include",
        "Write a few sentences about planning a vegetable garden. Make sure to use the words "
        "'compost' and 'sunlight'.",
        (("keywords:include", {"keywords": ["compost", "sunlight"]}),),
    ),
    (
        "meeting-start",
        "Write a short email to a colleague moving a meeting to Friday. Start your answer with the exact "
        "words 'Hi Sam'.",
        (("start:phrase", {"phrase": "Hi Sam"}),),
    ),
    (
        "storm-upper",
        "Write a two-sentence weather warning about an approaching storm. Write your entire answer in "
        "capital letters.",
        (("case:uppercase", {}),),
    ),
    (
        "exercise-paragraphs",
        "Explain why regular exercise matters. Write exactly 2 paragraphs separated by one blank line.",
        (("format:paragraphs", {"n": 2}),),
    ),
    (
        "ocean-exclude",
        "Describe the ocean to someone who has never seen it. Do not use the words 'blue' or 'water'.",
        (("keywords:exclude", {"keywords": ["blue", "water"]}),),
    ),
    (
        "library-end",
        "Write a short note inviting a friend to visit the new town library. End your answer with the "
        "exact phrase 'See you there.'",
        (("end:phrase", {"phrase": "See you there."}),),
    ),
    (
        "sleep-sentences",
        "Why do people need sleep? Answer in no more than 3 sentences.",
        (("length:max_sentences", {"n": 3}),),
    ),
    (
        "poem-title",
        "Write a short poem about autumn leaves. Give it a title wrapped in double angular brackets, "
        "like <<title>>.",
        (("format:title", {}),),
    ),
    (
        "steps-numbered",
        "How do you make a paper airplane? Give exactly 5 numbered steps, written as '1.', '2.' and so on.",
        (("format:numbered", {"n": 5}),),
    ),
    (
        "quote-wrap",
        "Give one sentence of encouragement for a student before an exam. Wrap your entire answer in "
        "double quotation marks.",
        (("format:quotation", {}),),
    ),
    (
        "letter-placeholders",
        "Write a template for a job application cover letter. Include at least 3 placeholders in square "
        "brackets, such as [name].",
        (("format:placeholders", {"n": 3}),),
    ),
    (
        "travel-postscript",
        "Write a short postcard message from a holiday at the seaside. At the end, add a postscript "
        "starting with 'P.S.'",
        (("content:postscript", {"marker": "P.S."}),),
    ),
    (
        "moon-frequency",
        "Write a short bedtime story for a child. Use the word 'moon' at least 3 times.",
        (("keywords:frequency", {"word": "moon", "n": 3}),),
    ),
    (
        "history-min-words",
        "Describe the invention of the printing press and why it mattered. Your answer must be at least "
        "120 words long.",
        (("length:min_words", {"n": 120}),),
    ),
    (
        "highlight-tips",
        "Give tips for saving money on groceries. Highlight at least 2 parts of your answer with Markdown "
        "italics, for example *highlighted part*.",
        (("format:highlights", {"n": 2}),),
    ),
    (
        "coffee-lower-short",
        "What is espresso? Answer in lowercase letters only and in at most 30 words.",
        (("case:lowercase", {}), ("length:max_words", {"n": 30})),
    ),
    (
        "fruit-json-exclude",
        "Name three fruits and their colours. Answer only with valid JSON, and do not mention 'apple'.",
        (("format:json", {}), ("keywords:exclude", {"keywords": ["apple"]})),
    ),
    (
        "robot-bullets-commas",
        "List things a home robot could help with. Use exactly 3 bullet points starting with '- ' and do "
        "not use any commas.",
        (("format:bullets", {"n": 3}), ("punctuation:no_commas", {})),
    ),
    (
        "mountain-start-end",
        "Describe a hike to a mountain lake. Begin with the word 'Yesterday' and end your answer with the "
        "phrase 'Worth every step.'",
        (("start:phrase", {"phrase": "Yesterday"}), ("end:phrase", {"phrase": "Worth every step."})),
    ),
    (
        "code-upper-words",
        "What does a computer programmer do? Reply in capital letters only and in at most 50 words.",
        (("case:uppercase", {}), ("length:max_words", {"n": 50})),
    ),
    (
        "bread-include-sentences",
        "How is bread made? Mention 'yeast' and 'oven', and use at most 4 sentences.",
        (("keywords:include", {"keywords": ["yeast", "oven"]}), ("length:max_sentences", {"n": 4})),
    ),
    (
        "city-paragraphs-title",
        "Describe your ideal city. Give it a title in double angular brackets like <<My City>>, then write "
        "exactly 3 paragraphs separated by blank lines.",
        (("format:title", {}), ("format:paragraphs", {"n": 3})),
    ),
    (
        "thanks-quote-short",
        "Write a thank-you message to a neighbour who watered your plants. Wrap the whole message in "
        "double quotation marks and keep it under 25 words.",
        (("format:quotation", {}), ("length:max_words", {"n": 25})),
    ),
    (
        "space-frequency-bullets",
        "Give facts about Mars. Write exactly 3 bullet points starting with '* ', and use the word 'planet' "
        "at least 2 times.",
        (("format:bullets", {"n": 3}), ("keywords:frequency", {"word": "planet", "n": 2})),
    ),
    (
        "school-exclude-lower",
        "Describe a typical school day. Do not use the word 'teacher', and write everything in lowercase.",
        (("keywords:exclude", {"keywords": ["teacher"]}), ("case:lowercase", {})),
    ),
    (
        "recipe-numbered-include",
        "Give a simple pancake recipe as exactly 4 numbered steps ('1.' to '4.'). Mention 'flour' and "
        "'milk'.",
        (("format:numbered", {"n": 4}), ("keywords:include", {"keywords": ["flour", "milk"]})),
    ),
    (
        "apology-start-postscript",
        "Write a short apology for missing a friend's birthday party. Start with 'Dear Alex' and add a "
        "postscript at the end starting with 'P.S.'",
        (("start:phrase", {"phrase": "Dear Alex"}), ("content:postscript", {"marker": "P.S."})),
    ),
    (
        "river-commas-sentences",
        "Describe a river at sunrise in at most 2 sentences, without using any commas.",
        (("length:max_sentences", {"n": 2}), ("punctuation:no_commas", {})),
    ),
    (
        "pet-json",
        'Describe a pet cat as a JSON object with the keys "name", "age" and "favourite_food". Output '
        "only the JSON.",
        (("format:json", {}), ("keywords:include", {"keywords": ["name", "age", "favourite_food"]})),
    ),
    (
        "invite-placeholders-end",
        "Write a party invitation template with at least 2 placeholders in square brackets like [date], "
        "and end it with the exact phrase 'Hope to see you!'",
        (("format:placeholders", {"n": 2}), ("end:phrase", {"phrase": "Hope to see you!"})),
    ),
    (
        "music-highlight-words",
        "Why do people enjoy music? Answer in at most 60 words and highlight at least 2 phrases with "
        "Markdown italics like *this*.",
        (("length:max_words", {"n": 60}), ("format:highlights", {"n": 2})),
    ),
    (
        "winter-upper-exclude",
        "Describe winter in three short sentences. Use only capital letters and do not use the word 'cold'.",
        (("case:uppercase", {}), ("keywords:exclude", {"keywords": ["cold"]})),
    ),
    (
        "phone-min-paragraphs",
        "Discuss the pros and cons of smartphones for teenagers. Write at least 100 words in exactly 2 "
        "paragraphs separated by a blank line.",
        (("length:min_words", {"n": 100}), ("format:paragraphs", {"n": 2})),
    ),
    (
        "train-start-lower",
        "Describe a train journey through the countryside. Start your answer with 'the train' and use "
        "only lowercase letters.",
        (("start:phrase", {"phrase": "the train"}), ("case:lowercase", {})),
    ),
    (
        "forest-frequency-end",
        "Write a short story set in a forest. Use the word 'tree' at least 2 times and end with the exact "
        "words 'The end.'",
        (("keywords:frequency", {"word": "tree", "n": 2}), ("end:phrase", {"phrase": "The end."})),
    ),
    (
        "habits-bullets-title",
        "Give a title in double angular brackets, like <<Good Habits>>, then list exactly 5 healthy habits "
        "as bullet points starting with '* '.",
        (("format:title", {}), ("format:bullets", {"n": 5})),
    ),
    (
        "chess-quote-commas",
        "Explain in one sentence why chess is a good game to learn. Wrap your answer in double quotation "
        "marks and do not use commas.",
        (("format:quotation", {}), ("punctuation:no_commas", {})),
    ),
    (
        "summary-three",
        "Summarise the water cycle. Use at most 3 sentences, mention 'evaporation', and write in lowercase.",
        (
            ("length:max_sentences", {"n": 3}),
            ("keywords:include", {"keywords": ["evaporation"]}),
            ("case:lowercase", {}),
        ),
    ),
    (
        "shopping-json-numbers",
        "Make a shopping list for a picnic as a JSON array of strings with at least 5 items. Output only "
        "the JSON and do not include the word 'soda'.",
        (("format:json", {}), ("keywords:exclude", {"keywords": ["soda"]})),
    ),
)
