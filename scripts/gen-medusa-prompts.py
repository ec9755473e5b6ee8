#!/usr/bin/env python3
"""Writes parallel-decode/data/medusa_train_prompts.jsonl: the prompts whose greedy answers
train the default model's Medusa heads (self-distillation).

The set is composed from templates so that it is varied and reproducible (seeded), and it is
kept apart from bench/prompts.jsonl: none of its products and none of its prompts appear there, so the
benchmark measures the heads on text they were not trained on. Grounded prompts use the same
layout as the benchmark's (a product description, then a customer question), because that is
the traffic the heads serve; open prompts cover shopping advice and general questions.

It has two parts: the first set (2333 prompts), then a second set with new products, things and
subjects (cooking, explanations, writing tasks, repairs, work, pets and plants, history),
appended after it so that the first set's prompts keep their places and their cached answers.
Add new content the same way: as a further set at the end, never by editing the earlier lists.

Usage: scripts/gen-medusa-prompts.py [OUT]   (standard library only; output is deterministic)
"""
import json
import os
import random
import sys

SEED = 20240611

# Prompts drawn from each advice template (see ADVICE_TEMPLATES).
ADVICE_PER_TEMPLATE = 55

# (name, category, description sentences, price)
PRODUCTS = [
    ("SummitDown Sleeping Bag", "sleeping bag", ["A mummy-shaped sleeping bag filled with 650-fill duck down", "comfort rating of -5 C and a limit of -12 C", "weighs 1.1 kg and packs into a 9-litre compression sack", "full-length two-way zip with a draught collar"], 219),
    ("AeroBrew Travel Press", "coffee maker", ["A portable coffee press that makes one 300 ml cup", "double-walled stainless steel body keeps coffee hot for two hours", "built-in fine mesh filter, no paper filters needed", "weighs 420 g and the lid doubles as a cup"], 39),
    ("GlowRest Sunrise Alarm", "alarm clock", ["A wake-up light that brightens over 30 minutes before the alarm", "20 brightness levels and six natural sounds", "FM radio and a USB charging port", "runs on mains power with a backup battery for the clock"], 69),
    ("SwiftCharge 65W Charger", "charger", ["A gallium nitride wall charger with two USB-C ports and one USB-A port", "65 W maximum from a single port, shared when several devices charge", "folding plug and a size of 5 by 5 by 3 cm", "works with laptops, tablets and phones"], 45),
    ("TerraGrip Hiking Boots", "hiking boots", ["Mid-height leather hiking boots with a waterproof breathable membrane", "Vibram rubber outsole with 5 mm lugs", "cushioned EVA midsole and a reinforced toe cap", "available in sizes 36 to 47 and in regular and wide fit", "each boot weighs 580 g"], 179),
    ("ClearView Dash Camera", "dash camera", ["A front and rear dash camera recording in 2K at 30 frames per second", "140-degree wide-angle lens and night vision", "loop recording to a microSD card of up to 256 GB", "G-sensor locks clips after a collision", "parking mode needs the optional hardwire kit"], 119),
    ("FreshKeep Vacuum Sealer", "vacuum sealer", ["A countertop vacuum sealer for food storage", "dry and moist modes and a pulse button for delicate foods", "built-in roll storage and cutter", "comes with 20 bags and a 3 m roll", "seals bags up to 30 cm wide"], 79),
    ("Orbit Bluetooth Speaker", "speaker", ["A portable Bluetooth 5.3 speaker with 360-degree sound", "IP67 waterproof and dustproof, and it floats", "battery lasts up to 18 hours", "pairs with a second speaker for stereo", "weighs 540 g and charges over USB-C"], 89),
    ("NordicWool Throw Blanket", "blanket", ["A throw blanket woven from 100 percent merino wool", "measures 130 by 170 cm", "machine washable on the wool cycle at 30 C", "available in five colours"], 95),
    ("PrecisionPro Kitchen Scale", "kitchen scale", ["A digital kitchen scale weighing up to 5 kg in 1 g steps", "tare function and units in grams, ounces, pounds and millilitres", "tempered glass platform that wipes clean", "runs on two AAA batteries, included"], 24),
    ("RoamLite Carry-On Suitcase", "suitcase", ["A hard-shell carry-on suitcase of 55 by 40 by 20 cm", "polycarbonate shell and four spinner wheels", "TSA-approved combination lock", "expands by 4 cm for 10 percent more space", "weighs 2.7 kg and has a 10-year warranty"], 159),
    ("AquaFlow Shower Head", "shower head", ["A rain shower head 25 cm across with five spray modes", "uses 30 percent less water than a standard shower head", "anti-limescale silicone nozzles", "fits any standard half-inch shower arm without tools"], 49),
    ("KinderBlocks Building Set", "toy", ["A set of 250 wooden building blocks in 12 shapes", "painted with water-based non-toxic paint", "suitable for children aged 3 and up", "comes in a canvas storage bag"], 55),
    ("SilentPeak Desk Fan", "fan", ["A bladeless desk fan with ten speeds and 80-degree oscillation", "noise level of 26 dB on the lowest setting", "sleep timer of 1 to 8 hours and a remote control", "uses 22 W on full speed"], 99),
    ("VeloCity Commuter Bike", "bicycle", ["A city bike with an aluminium frame and a 7-speed Shimano hub gear", "hydraulic disc brakes and puncture-resistant tyres", "integrated front and rear lights powered by a dynamo", "mudguards and a rear rack for up to 25 kg", "frame sizes S, M and L"], 649),
    ("PureSip Water Filter Jug", "water filter", ["A 2.4-litre water filter jug with a replaceable carbon cartridge", "each cartridge filters 150 litres, about one month", "reduces chlorine, limescale and some metals", "fits in a fridge door", "BPA-free plastic"], 29),
    ("NightOwl Reading Light", "reading light", ["A clip-on book light with warm and cool white modes", "flexible neck and three brightness levels", "rechargeable battery lasting 40 hours on low", "weighs 60 g"], 19),
    ("IronCore Adjustable Dumbbells", "dumbbells", ["A pair of adjustable dumbbells from 2.5 to 24 kg each", "a dial changes the weight in 15 steps", "moulded storage trays included", "each dumbbell is 40 cm long"], 329),
    ("FrostBite Ice Cream Maker", "ice cream maker", ["An ice cream maker with a built-in compressor, so no pre-freezing", "makes 1.5 litres in about 40 minutes", "modes for ice cream, sorbet and frozen yoghurt", "keeps ice cream cold for an hour after it is done"], 249),
    ("MistPure Humidifier", "humidifier", ["An ultrasonic cool-mist humidifier with a 4-litre tank", "runs up to 30 hours on the low setting", "built-in humidity sensor with automatic mode", "whisper-quiet at 28 dB and turns off when the tank is empty"], 65),
    ("SnapLock Food Containers", "food containers", ["A set of 10 glass food storage containers with locking lids", "oven safe to 300 C without the lids", "microwave, freezer and dishwasher safe", "sizes from 350 ml to 1.5 litres"], 42),
    ("TrailBlaze Headlamp", "headlamp", ["A rechargeable headlamp with a maximum of 450 lumens", "red light mode to keep night vision", "IPX4 splash resistant", "runs 5 hours on high and 60 hours on low", "weighs 85 g"], 35),
    ("SoundNest Earbuds", "earbuds", ["True wireless earbuds with active noise cancellation", "6 hours of playback, 24 hours with the charging case", "IPX5 sweat resistance", "touch controls and a transparency mode", "three sizes of silicone tips included"], 79),
    ("GardenPro Pressure Washer", "pressure washer", ["An electric pressure washer of 1800 W and up to 130 bar", "comes with a patio cleaner and a rotating brush", "8 m high-pressure hose", "detergent tank of 1 litre", "weighs 11 kg on two wheels"], 189),
    ("BabyDream Video Monitor", "baby monitor", ["A video baby monitor with a 5-inch screen and a range of 300 m", "night vision and two-way talk", "room temperature sensor and lullabies", "the parent unit battery lasts 12 hours", "works without Wi-Fi or an app"], 109),
    ("CrispSlice Mandoline", "mandoline slicer", ["A mandoline slicer with an adjustable blade from 1 to 9 mm", "julienne and crinkle-cut inserts", "cut-resistant glove and a food holder included", "dishwasher safe and folds flat for storage"], 34),
    ("ArcticCool Cooler Box", "cooler", ["A rotomoulded cooler box of 45 litres", "keeps ice for up to 5 days", "rubber gasket and heavy-duty latches", "built-in bottle opener and drain plug", "weighs 10 kg empty"], 229),
    ("StudyBuddy Ergonomic Chair", "office chair", ["An ergonomic office chair with a mesh back and adjustable lumbar support", "3D armrests and a headrest", "seat height adjustable from 45 to 55 cm", "supports up to 136 kg", "five-year warranty"], 289),
    ("SparkClean Electric Toothbrush", "electric toothbrush", ["A sonic electric toothbrush with 40,000 strokes per minute", "five cleaning modes and a two-minute timer", "pressure sensor that lights up when you brush too hard", "battery lasts 30 days", "comes with a travel case and two brush heads"], 59),
    ("MapleCraft Cutting Board", "cutting board", ["A 45 by 30 cm end-grain maple cutting board, 4 cm thick", "juice groove around the edge and rubber feet", "gentle on knife edges", "needs oiling once a month and is not dishwasher safe"], 85),
    ("PolarShield Winter Jacket", "winter jacket", ["A hooded winter parka with synthetic insulation rated to -20 C", "waterproof and windproof outer shell", "fleece-lined hand pockets and an inner phone pocket", "machine washable", "sizes XS to XXL"], 199),
    ("HomeSense Smart Plug", "smart plug", ["A Wi-Fi smart plug that switches devices up to 3680 W", "energy monitoring in the app", "schedules, timers and away mode", "works with voice assistants", "no hub needed, 2.4 GHz Wi-Fi only"], 15),
    ("WaveRider Stand-Up Paddleboard", "paddleboard", ["An inflatable stand-up paddleboard of 320 by 81 by 15 cm", "supports riders up to 130 kg", "comes with a pump, a three-piece paddle, a leash and a backpack", "non-slip deck pad", "inflates in about 8 minutes"], 399),
    ("BrightSmile Kids Tablet", "kids tablet", ["An 8-inch tablet for children aged 3 to 10 with a shockproof case", "parental controls and time limits", "32 GB of storage and a microSD slot", "battery lasts about 10 hours", "two-year worry-free guarantee"], 129),
    ("TimberLine Camping Stove", "camping stove", ["A compact gas camping stove with a piezo igniter", "boils one litre of water in 3.5 minutes", "weighs 85 g and folds into a small case", "fits standard threaded gas canisters, sold separately"], 49),
    ("LuxeLinen Bed Sheet Set", "bed sheets", ["A bed sheet set in stonewashed French linen", "includes a fitted sheet, a flat sheet and two pillowcases", "fitted sheet fits mattresses up to 35 cm deep", "gets softer with every wash", "sizes single, double, king and super king"], 149),
    ("ProShot Drone Mini", "drone", ["A folding camera drone weighing 249 g", "4K video with a three-axis gimbal", "flight time of 31 minutes per battery", "range of up to 10 km", "obstacle sensors at the front and below"], 459),
    ("PetPal Automatic Feeder", "pet feeder", ["An automatic pet feeder holding 4 litres of dry food", "up to six meals a day, set in the app or with buttons", "records a 10-second voice message for meal times", "runs on mains power with battery backup"], 75),
    ("EasyFold Treadmill", "treadmill", ["A folding walking and running treadmill with a 2.25 hp motor", "speeds from 1 to 14 km/h and three incline levels", "running belt of 120 by 42 cm", "supports users up to 110 kg", "folds upright to save space"], 549),
    ("ZestPress Citrus Juicer", "juicer", ["An electric citrus juicer with two cone sizes", "pulp control with three settings", "the cone turns both ways for more juice", "drip-stop spout and dishwasher-safe parts"], 39),
]

QUESTIONS = [
    "How much does it cost?",
    "What is it made of?",
    "Is it good for a beginner?",
    "What comes in the box?",
    "How heavy is it?",
    "Would you recommend it as a gift?",
    "Is it worth the price?",
    "What are its main features?",
    "Is it suitable for children?",
    "How do I clean it?",
    "Can I take it on a trip?",
    "What are the downsides?",
    "Does it need batteries?",
    "Who is this product for?",
    "How does it compare with cheaper options?",
    "Can you summarise the product in two sentences?",
    "Is it waterproof?",
    "What size is it?",
    "Will it last a long time?",
    "Is it easy to use?",
    "Can I use it outdoors?",
    "What warranty does it have?",
    "Is it noisy?",
    "How long does it take to set up?",
    "Can two people share it?",
    "What should I know before buying it?",
    "Is it better than the previous model?",
    "How should I store it when I am not using it?",
]

OPEN_TEMPLATES = [
    "What should I look for when buying a {item}?",
    "How do I choose a good {item}?",
    "What are the pros and cons of a {item}?",
    "How do I take care of a {item} so that it lasts?",
    "Is a more expensive {item} worth it?",
    "What mistakes do people make when buying a {item}?",
    "Can you explain how a {item} works?",
    "What is a reasonable budget for a {item}?",
    "Which features matter most in a {item}?",
    "How long should a {item} last?",
    "Should I buy a new or a second-hand {item}?",
    "What accessories go well with a {item}?",
    "What is the difference between a cheap and an expensive {item}?",
    "How do I set up a new {item}?",
    "What are common problems with a {item}, and how do I fix them?",
    "Is it better to buy a {item} online or in a shop?",
    "What safety tips should I know when using a {item}?",
    "Would a {item} make a good birthday present?",
    "How do I clean a {item} properly?",
    "What do the numbers in a {item}'s specifications mean?",
]

ITEMS = [
    "sleeping bag", "coffee machine", "wireless charger", "pair of hiking boots", "dash camera",
    "bluetooth speaker", "wool blanket", "suitcase", "bicycle", "water filter", "set of dumbbells",
    "humidifier", "headlamp", "pressure washer", "baby monitor", "cooler box", "office chair",
    "electric toothbrush", "winter jacket", "smart plug", "paddleboard", "camping stove",
    "drone", "treadmill", "blender", "rice cooker", "sewing machine", "gaming laptop",
    "digital camera", "pair of sunglasses", "bread maker", "car vacuum cleaner", "sofa",
    "dishwasher", "pair of walking poles", "tool kit", "printer", "robot lawn mower",
    "washing machine", "microwave oven", "electric kettle", "toaster", "food processor",
    "slow cooker", "espresso grinder", "pair of ski goggles", "snowboard", "fishing rod",
    "tennis racket", "yoga block", "rowing machine", "exercise bike", "car seat cover",
    "child's bicycle helmet", "baby stroller", "high chair", "pet carrier", "dog bed",
    "cat scratching post", "aquarium", "garden hose", "lawn mower", "hedge trimmer",
    "cordless drill", "ladder", "smoke alarm", "doorbell camera", "wifi router",
    "external hard drive", "computer mouse", "webcam", "graphics tablet", "projector",
    "soundbar", "record player", "pair of binoculars", "telescope", "sewing kit",
    "rain jacket", "pair of gloves", "watch strap", "jewellery box", "reading chair",
    "bookshelf", "desk organiser", "fountain pen", "board game", "jigsaw puzzle",
]

GENERAL = [
    "Write a short thank-you note to a customer who bought a bicycle.",
    "Explain the difference between a warranty and a guarantee.",
    "How do I return an item I bought online?",
    "What is the best way to compare prices between shops?",
    "Give me three tips for packing a suitcase efficiently.",
    "How can I tell if a product review is fake?",
    "What does free shipping usually mean?",
    "How do I choose a gift for a colleague I do not know well?",
    "What is a good way to plan a weekly grocery budget?",
    "Explain what a refurbished product is.",
    "How do I protect my personal data when shopping online?",
    "What should I do if a parcel arrives damaged?",
    "Why do prices go down during seasonal sales?",
    "What is the difference between LED and halogen bulbs?",
    "How do I make my home more energy efficient?",
    "What are some healthy snacks to take to work?",
    "How can I reduce plastic waste at home?",
    "What is the best way to learn to cook simple meals?",
    "How do I keep my houseplants healthy in winter?",
    "What should a first-aid kit for hiking contain?",
    "How do I choose paint colours for a bedroom?",
    "Write a two-sentence product description for a reusable shopping bag.",
    "Explain what a subscription service is and when it saves money.",
    "How do I clean a stainless steel sink?",
    "What is the difference between a loan and a credit card payment plan?",
    "Suggest a simple weekly exercise plan for a busy person.",
    "How do I organise a small kitchen?",
    "What is the difference between a fridge and a freezer temperature?",
    "How can I make a long car trip comfortable for children?",
    "What are the benefits of buying local products?",
    "Explain how to measure a room for a new carpet.",
    "What is a good way to store winter clothes in summer?",
    "How do I choose between a gas and an electric hob?",
    "What should I check before buying a used car?",
    "Give me a checklist for moving into a new flat.",
    "How can I sleep better at night?",
    "What does the energy label on an appliance tell me?",
    "How do I prepare my garden for spring?",
    "Explain the difference between Wi-Fi 5 and Wi-Fi 6.",
    "How do I choose a laptop for video editing?",
    "Write a friendly reply to a customer asking when their order will arrive.",
    "What are some fun activities for a rainy weekend?",
    "How do I care for leather shoes?",
    "What is the difference between organic and conventional cotton?",
    "How can I tell if a melon is ripe?",
    "What should I bring to a picnic?",
    "How do I start a small vegetable garden on a balcony?",
    "What are the advantages of a mechanical keyboard?",
    "How long does a typical smartphone battery last before it needs replacing?",
    "Explain what a return policy is in simple words.",
    "How do I decide between two products with similar reviews?",
    "What is the difference between a brand name and a store brand?",
    "How can I make my morning routine faster?",
    "What are some easy dinners I can cook in twenty minutes?",
    "How do I keep my bike in good condition?",
    "What should I look at on a nutrition label?",
    "How can I make my laptop battery last longer?",
    "What is a good way to organise a wardrobe?",
    "How do I remove a coffee stain from a shirt?",
    "What are some ways to stay warm at home without turning up the heating?",
    "How do I choose a good pair of jeans?",
    "Explain how a price match guarantee works.",
    "What is the difference between a hybrid and an electric car?",
    "How do I plan a birthday party for a ten-year-old?",
    "What are the most useful apps for planning a trip?",
    "How do I clean an oven without harsh chemicals?",
    "What should I do before selling my old phone?",
    "How do I choose a good frying pan?",
    "What is the best way to store fresh herbs?",
    "Give me five ideas for a cheap but thoughtful gift.",
    "How do I set up a home office on a small budget?",
    "What is the difference between a duvet and a comforter?",
    "How do loyalty cards save money?",
    "Write a short message asking a shop for a refund.",
    "What are the signs that a washing machine needs repair?",
    "How can I make a small balcony more pleasant?",
    "Explain what a product recall is.",
    "How do I teach a child to ride a bike?",
    "What should I pack for a weekend city break?",
    "How do I choose sunscreen for a day at the beach?",
    "What is the difference between memory foam and a spring pillow?",
    "How do I make a budget for a kitchen renovation?",
    "What are good habits for keeping a tidy home?",
    "How can I reduce food waste?",
    "What should I know before adopting a dog?",
    "How do I choose a good bicycle lock?",
    "Explain the difference between streaming and downloading music.",
    "What are the benefits of a programmable thermostat?",
    "How do I pick a ripe avocado?",
    "Write a polite complaint about a late delivery.",
    "What should I consider when buying furniture for a rented flat?",
    "How do I wash a wool jumper without shrinking it?",
    "What are some good indoor activities for toddlers?",
    "How can I tell if a second-hand item is in good condition?",
    "Explain what an extended warranty covers.",
    "How do I choose the right light bulbs for each room?",
    "What is a good way to start running if I have never run before?",
    "How do I keep bread fresh for longer?",
    "What are the pros and cons of buying in bulk?",
    "How do I set a strong password for my online shopping accounts?",
    "Write three sentences describing a cosy reading corner.",
    "What are some tips for buying shoes online?",
    "How do I look after a wooden chopping board?",
    "What is the difference between a smart TV and a regular TV?",
    "How do I prepare for a long hike in hot weather?",
    "What should I keep in my car for emergencies?",
    "How can I make my phone photos look better?",
    "Explain how buy now, pay later services work.",
    "How do I choose a good umbrella?",
    "What is the best way to wrap a present neatly?",
]


# Everyday-advice questions: the open traffic is not only "how do I choose a <thing>"; people ask
# about rooms, trips, hobbies, food, money and habits in many phrasings. Each template names the
# slot lists it draws from; every combination is a candidate and a seeded sample is kept.
ADVICE_TEMPLATES = [
    ("How can I make my {room} feel {quality}?", ["room", "quality"]),
    ("What are good gift ideas for someone who loves {hobby}?", ["hobby"]),
    ("What would be a thoughtful present for a friend who is into {hobby}?", ["hobby"]),
    ("What should I pack for {trip}?", ["trip"]),
    ("Can you give me a packing list for {trip}?", ["trip"]),
    ("What is a good way to get started with {activity}?", ["activity"]),
    ("I want to take up {activity}. What equipment do I need?", ["activity"]),
    ("How much should a beginner spend on gear for {activity}?", ["activity"]),
    ("What is the best way to store {food}?", ["food"]),
    ("What can I cook with {food}?", ["food"]),
    ("How can I save money on {expense}?", ["expense"]),
    ("What are some ways to spend less on {expense} each month?", ["expense"]),
    ("What is the best way to look after {possession}?", ["possession"]),
    ("How often should I clean {possession}, and how?", ["possession"]),
    ("Which {category} are best for {person}?", ["category", "person"]),
    ("What should I consider before {decision}?", ["decision"]),
    ("What are the pros and cons of {decision}?", ["decision"]),
    ("What is the difference between {pair}?", ["pair"]),
    ("Which is better for {person}: {pair_or}?", ["person", "pair_or"]),
    ("How do {mechanism} work?", ["mechanism"]),
    ("Can you explain in simple words how {mechanism} work?", ["mechanism"]),
    ("What are some tips for {situation}?", ["situation"]),
    ("I am {situation}. Any advice?", ["situation"]),
    ("How can I {goal}?", ["goal"]),
    ("What are three small habits that help me {goal}?", ["goal"]),
    ("Is it worth paying extra for {upgrade}?", ["upgrade"]),
    ("Do I really need {upgrade}?", ["upgrade"]),
    ("What should I do when {problem}?", ["problem"]),
    ("My {problem_thing}. How can I fix it?", ["problem_thing"]),
    ("What would you recommend for {person} who wants to {goal}?", ["person", "goal"]),
]

SLOTS = {
    "room": ["living room", "bedroom", "home office", "hallway", "bathroom", "kitchen",
             "guest room", "studio flat", "dining room", "balcony", "children's room", "basement"],
    "quality": ["cosier", "brighter", "calmer", "more spacious", "warmer", "more modern",
                "tidier", "more welcoming"],
    "hobby": ["baking", "photography", "cycling", "board games", "knitting", "camping",
              "painting", "bird watching", "fishing", "yoga", "reading crime novels", "cooking Thai food",
              "woodworking", "video games", "tea", "jazz records", "rock climbing", "sewing",
              "astronomy", "running marathons", "growing tomatoes", "chess", "wine", "travel"],
    "trip": ["a ski holiday", "a business trip of three days", "a week of camping in the mountains",
             "a city break in winter", "a long-haul flight", "a road trip with two dogs",
             "a festival weekend", "a sailing trip", "a cycling tour", "a family visit at Christmas",
             "a trip to a rainy country", "a hiking trip in the desert", "a honeymoon on an island",
             "a school trip", "a weekend in a cabin without electricity"],
    "activity": ["swimming", "cycling to work", "bouldering", "home brewing", "pottery",
                 "skateboarding", "learning the guitar", "trail running",
                 "photography", "bird watching", "kayaking", "baking sourdough bread", "weightlifting",
                 "drawing", "cross-country skiing", "camping", "tennis", "sewing clothes", "meditation"],
    "food": ["fresh herbs", "bananas", "cheese", "leftover rice", "bread", "avocados", "lettuce",
             "cooked pasta", "berries", "mushrooms", "potatoes", "eggs", "onions", "tomatoes",
             "ground coffee", "nuts", "tortillas", "carrots", "lemons", "chocolate"],
    "expense": ["groceries", "electricity", "heating", "phone bills", "car insurance",
                "eating out", "children's clothes", "train tickets", "gym memberships", "streaming services",
                "furniture", "holidays", "pet food", "school supplies", "water bills", "petrol"],
    "possession": ["a leather sofa", "a wooden dining table", "a down jacket", "a laptop keyboard",
                   "a stainless steel kettle", "suede boots", "a wool carpet", "a car interior",
                   "a non-stick pan", "a glass shower screen", "a memory foam pillow",
                   "a bicycle chain", "a phone screen", "white trainers", "silver jewellery",
                   "a marble worktop", "a velvet armchair", "a dishwasher filter"],
    "category": ["board games", "houseplants", "pets", "books", "kitchen gadgets", "sports",
                 "musical instruments", "cars", "phones", "shoes", "bikes", "hobbies"],
    "person": ["a busy parent", "a student on a budget", "someone who works from home",
               "a retired couple", "a beginner", "a family with two young children",
               "someone who travels a lot", "a person with a small flat", "a teenager",
               "someone with back pain", "a first-time home owner", "a grandparent"],
    "decision": ["buying a house instead of renting", "switching to an electric car",
                 "getting a second cat", "working from home full time", "buying a season ticket",
                 "moving to a bigger city", "taking a gap year", "buying a dishwasher for two people",
                 "joining a gym", "installing solar panels", "buying a campervan",
                 "upgrading my phone every year", "learning to drive", "getting a dog as a first pet",
                 "booking a holiday at the last minute", "buying extended warranties"],
    "pair": ["a latte and a cappuccino", "baking soda and baking powder", "a virus and a bacterium",
             "a mortgage and a loan", "RAM and storage", "a debit card and a credit card",
             "a duvet and a quilt", "sunscreen SPF 30 and SPF 50", "an e-reader and a phone for reading",
             "a hybrid bike and a road bike", "a pressure cooker and a slow cooker",
             "a heat pump and a boiler", "a laser printer and an inkjet printer",
             "a savings account and a current account", "jam and marmalade",
             "a sweater and a cardigan", "a kayak and a canoe", "HDMI and DisplayPort"],
    "pair_or": ["a dog or a cat", "a car or a bike", "a gas or an induction hob",
                "a shower or a bath", "an apartment or a house", "a desktop or a laptop",
                "a paper book or an e-reader", "a train or a plane for a 500 km trip",
                "a sofa bed or a guest bed", "tiles or wooden floors", "a backpack or a suitcase"],
    "mechanism": ["heat pumps", "credit scores", "solar panels", "vaccines", "dishwashers",
                  "electric cars", "contactless payments", "smoke detectors", "GPS receivers",
                  "induction hobs", "air fryers", "hearing aids", "refrigerators", "touch screens",
                  "noise machines", "water softeners", "barcodes", "pressure cookers"],
    "situation": ["moving house next month", "hosting a dinner for eight people",
                  "starting a new job on Monday", "travelling alone for the first time",
                  "buying my first car", "planning a wedding on a small budget",
                  "looking after a puppy", "working night shifts", "learning a new language",
                  "renovating an old bathroom", "training for a 10 km run",
                  "organising a garage sale", "preparing for a job interview",
                  "cooking for a picky child", "going camping with toddlers"],
    "goal": ["sleep better", "drink more water", "spend less time on my phone",
             "keep my house tidy", "eat more vegetables", "save for a holiday",
             "get fitter without a gym", "read more books", "waste less food",
             "keep my plants alive", "be more productive at home", "cut my energy bills",
             "make friends in a new town", "stay warm in winter", "keep my car in good shape",
             "cook healthier meals", "reduce stress at work", "learn to swim as an adult"],
    "upgrade": ["a faster broadband connection", "premium bed linen", "business class",
                "a phone with a better camera", "organic vegetables", "a designer handbag",
                "a warranty on a fridge", "a professional haircut", "a gaming chair",
                "an electric toothbrush", "noise-cancelling earbuds", "a 4K monitor",
                "a car with automatic gears", "a water filter", "a smart thermostat"],
    "problem": ["my flight is cancelled", "a parcel never arrives", "my phone gets wet",
                "I lock myself out of my flat", "my neighbour is too loud",
                "a shop refuses a refund", "my car will not start in the cold",
                "I burn a pan", "my laptop runs slowly", "my bread always turns out flat",
                "my washing comes out smelly", "my cat stops eating"],
    "problem_thing": ["fridge is making a buzzing noise", "shower has low pressure",
                      "wifi keeps dropping in the evening", "zip on my jacket is stuck",
                      "bike brakes squeak", "oven does not heat evenly",
                      "sofa cushions have gone flat", "printer keeps jamming",
                      "windows steam up every morning", "kettle is full of limescale",
                      "headphones only play on one side", "tap drips all night"],
}

EVERYDAY = [
    "What is a sensible morning routine for someone who works from home?",
    "How do I explain to my kids why we are saving money?",
    "Write a short message to my landlord about a broken heater.",
    "What is the difference between weather and climate?",
    "Give me a simple recipe for vegetable soup.",
    "How do I write a good review of a product I bought?",
    "What are easy ways to make a rented flat feel like home?",
    "Suggest five questions to ask when viewing a flat.",
    "How can I stay focused when studying for exams?",
    "What are some polite ways to say no to extra work?",
    "Explain compound interest with a simple example.",
    "How do I plan meals for a week?",
    "What should I do on my first day in a new city?",
    "Write a short birthday message for my grandmother.",
    "What is a healthy breakfast that takes five minutes?",
    "How do I prepare for a power cut?",
    "Give me tips for taking better photos of products to sell online.",
    "What are the basics of looking after a goldfish?",
    "How do I split bills fairly with flatmates?",
    "What is a good way to learn to touch type?",
    "Explain what inflation means for my shopping.",
    "How do I make a small garden attractive to bees?",
    "Write a short note to a neighbour about a parcel I took in for them.",
    "What are the signs of a good quality sofa?",
    "How do I teach a dog to walk on a lead?",
    "What should I do if I find a scratch on something I just bought?",
    "How do I choose a charity to donate to?",
    "What are some fun things to do with teenagers on a rainy day?",
    "How do I get rid of fruit flies in the kitchen?",
    "Give me a short checklist before going on holiday.",
    "What should I know about buying a gift card?",
    "How can I make packed lunches more interesting?",
    "Explain how a dishwasher's eco mode saves energy.",
    "What is the best order to clean a room in?",
    "How can I make my commute more enjoyable?",
    "What is a capsule wardrobe, and how do I build one?",
    "How do I know which size to order when shopping for clothes online?",
    "Write a short product description for a handmade candle.",
    "What can I do with old clothes I no longer wear?",
    "How do I keep a cut flower bouquet fresh for longer?",
    "What are some tips for a first camping trip?",
    "How do I compare two phone contracts?",
    "Explain what a unit price on a supermarket label tells me.",
    "How can I make a cheap bookshelf look expensive?",
    "What is the best way to defrost a freezer?",
    "Give me ideas for a picnic lunch that travels well.",
    "How do I know if a deal is really a bargain?",
    "What should I do before lending my car to a friend?",
    "How do I calm down before a big presentation?",
    "What are some good habits for online security?",
]

# Subjects of the benchmark's open prompts: left out of the slot lists above so that the
# benchmark keeps measuring the heads on questions they were not trained on.
BENCH_SUBJECTS = [
    "tent", "running shoes", "tablet", "kitchen tools", "small apartment", "gardening",
    "backpack for a week", "robot vacuum", "beach holiday", "noise-cancelling headphones",
    "exercising at home", "coffee beans", "smartwatch", "shopping online", "cast iron",
    "houseplants are easy", "mattress", "electric scooter", "television", "standing desk",
]


def bench_prompts():
    """The benchmark's prompts (bench/prompts.jsonl beside this script's repository)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "prompts.jsonl")
    with open(path, encoding="utf-8") as f:
        return {json.loads(line)["prompt"].strip().lower() for line in f if line.strip()}

def describe(product):
    name, category, facts, price = product
    text = ". ".join(facts) + f". Price: ${price}."
    return f"Product: {name}\nDescription: {text}"


def grounded(product, question):
    """A grounded prompt: the product's description, then a customer's question about it."""
    return (
        describe(product)
        + "\n\nUsing the description above, answer the customer's question.\nQuestion: "
        + question
    )


# ---------------------------------------------------------------------------------------------
# The second set (added later): more products, things and subjects, appended after the first
# set's rows so that the first set's prompts keep their places (the distillation cache keeps
# answers in chunks of 256 prompts, by content). Distilling 2100 prompts gave heads clearly
# better than 461 did; this set is new content, not new combinations of the first set's lists.

SECOND_SEED = 20261203

# Questions drawn for each of the second set's products.
SECOND_QUESTIONS_PER_PRODUCT = 14

SECOND_PRODUCTS = [
    ("HearthGlow Electric Fireplace", "electric fireplace", ["A wall-mounted electric fireplace 127 cm wide with a realistic flame effect", "two heat settings of 750 W and 1500 W, or flames without heat", "12 flame colours and a remote control", "thermostat and an 8-hour timer"], 349),
    ("SkyLens Camera Drone", "drone", ["A folding camera drone weighing 249 g", "4K video at 30 frames per second on a three-axis gimbal", "31 minutes of flight per battery and a range of 10 km", "returns home automatically when the battery is low", "obstacle sensors at the front and bottom"], 459),
    ("RiverStone Pour-Over Set", "pour-over coffee set", ["A ceramic pour-over dripper with a 600 ml glass server", "a gooseneck kettle of 800 ml for the stove", "comes with 100 paper filters", "makes one to four cups"], 59),
    ("FitTrack Rowing Machine", "rowing machine", ["A magnetic rowing machine with 16 resistance levels", "display shows time, strokes, distance and calories", "folds upright to 70 by 50 cm of floor space", "aluminium rail for users up to 190 cm and 150 kg"], 549),
    ("PageTurner Bookshelf", "bookshelf", ["A five-shelf bookcase in solid pine, 180 by 80 by 30 cm", "each shelf holds up to 25 kg", "two of the shelves are adjustable in height", "wall anchor included and it needs assembly"], 139),
    ("CloudStep Slippers", "slippers", ["Memory foam slippers with a wool-blend lining", "non-slip rubber soles for indoors and a quick trip outside", "machine washable at 30 C", "sizes 36 to 46"], 35),
    ("TurboBlend Pro Blender", "blender", ["A 1500 W countertop blender with a 2-litre Tritan jug", "eight speeds and programmes for smoothies, soup and ice", "hardened steel blades with six points", "the jug and lid are dishwasher safe", "seven-year motor warranty"], 169),
    ("SafeHome Video Doorbell", "video doorbell", ["A wireless video doorbell with a 1080p camera and a 160-degree view", "two-way audio and motion alerts on your phone", "battery lasts about six months per charge", "night vision up to 5 m", "cloud storage needs a monthly plan"], 99),
    ("PedalPal Kids Balance Bike", "balance bike", ["A balance bike for children aged 2 to 5 with a lightweight aluminium frame", "air-free foam tyres that never go flat", "seat height adjusts from 30 to 42 cm", "weighs 3 kg"], 89),
    ("StillWater Aquarium Kit", "aquarium", ["A 60-litre glass aquarium kit with a lid", "includes an internal filter, a heater and LED lighting", "the light has day and night modes", "a guide to cycling the water for beginners"], 129),
    ("GripMaster Cordless Drill", "cordless drill", ["An 18 V cordless drill driver with two 2 Ah batteries", "two speeds and 21 torque settings", "hammer mode for drilling into brick", "comes with a charger and a 30-piece bit set in a case"], 119),
    ("ComfyPaws Orthopaedic Dog Bed", "dog bed", ["An orthopaedic dog bed with a 10 cm memory foam base", "removable cover that is machine washable", "waterproof liner under the cover", "sizes M, L and XL"], 79),
    ("StarGazer 70 Telescope", "telescope", ["A refractor telescope with a 70 mm lens and a 700 mm focal length", "two eyepieces and a 3x Barlow lens", "aluminium tripod and a finder scope", "a smartphone adapter for taking photos"], 149),
    ("EverFresh Bread Maker", "bread maker", ["A bread maker with 15 programmes including gluten-free and jam", "makes loaves of 500 g, 750 g or 1 kg", "13-hour delay timer and a keep-warm function", "fruit and nut dispenser"], 99),
    ("TrueNorth GPS Watch", "GPS watch", ["An outdoor GPS watch with maps and a barometric altimeter", "battery lasts 14 days as a watch and 30 hours with GPS", "heart rate and blood oxygen sensor", "water resistant to 100 m"], 299),
    ("SereneSound White Noise Machine", "white noise machine", ["A white noise machine with 30 sounds including fans, rain and waves", "timer of 30, 60 or 90 minutes, or all night", "headphone socket and a night light", "powered by USB-C"], 35),
    ("AlpineRidge Trekking Poles", "trekking poles", ["A pair of carbon fibre trekking poles weighing 210 g each", "adjustable from 105 to 135 cm with flick locks", "cork grips and foam extensions", "rubber tips and snow baskets included"], 89),
    ("BrightWash Washing Machine", "washing machine", ["A front-loading washing machine with a 9 kg drum and 1400 rpm spin", "energy class A and a quick 15-minute wash", "steam programme to reduce creases", "delay start of up to 24 hours", "inverter motor with a ten-year warranty"], 499),
    ("PrintEase Ink Tank Printer", "printer", ["An all-in-one ink tank printer that prints, scans and copies", "bottles of ink print up to 7,500 pages in colour", "Wi-Fi and printing from the phone app", "automatic double-sided printing"], 229),
    ("HarvestHome Raised Garden Bed", "raised garden bed", ["A galvanised steel raised garden bed of 180 by 90 by 30 cm", "no tools needed to assemble", "rust-resistant coating and rounded edges", "holds about 480 litres of soil"], 69),
    ("SnugFit Baby Carrier", "baby carrier", ["An ergonomic baby carrier for babies from 3.5 to 20 kg", "front, hip and back carrying positions", "breathable mesh panel and a padded waist belt", "machine washable"], 119),
    ("VaultKey Smart Lock", "smart lock", ["A smart door lock that opens with a fingerprint, a code, the app or a key", "stores up to 100 fingerprints", "auto-lock after a set time", "four AA batteries last about a year", "fits most standard doors 35 to 80 mm thick"], 199),
    ("Sprout Silicone Baby Plates", "baby plates", ["A set of three silicone suction plates with divided sections", "food-grade silicone free of BPA", "the suction base keeps the plate on the table", "microwave and dishwasher safe"], 25),
    ("FlowState Foam Roller", "foam roller", ["A 45 cm foam roller with a grid surface for massage", "hollow core that holds up to 250 kg", "comes with a guide to 20 exercises", "weighs 700 g"], 29),
    ("NomadCook Cast Iron Skillet", "skillet", ["A 26 cm pre-seasoned cast iron skillet", "works on gas, electric, induction and over a campfire", "two pouring lips and a helper handle", "weighs 2.4 kg and lasts for generations with care"], 45),
    ("ClearCall Conference Speaker", "conference speaker", ["A USB and Bluetooth speakerphone for video calls", "six microphones pick up voices from 3 m away", "echo and noise cancellation", "battery lasts 15 hours of talk time"], 129),
    ("PureGlow Facial Steamer", "facial steamer", ["A nano-ionic facial steamer with a 60 ml tank", "heats up in 30 seconds and steams for 10 minutes", "turns off automatically when the tank is empty", "comes with a five-piece skin tool kit"], 39),
    ("TideRunner Wetsuit", "wetsuit", ["A 3/2 mm full-length neoprene wetsuit", "back zip and glued, blind-stitched seams", "knee pads for surfing and paddling", "for water of 14 to 20 C", "sizes S to XXL"], 159),
    ("QuickFix Sewing Machine", "sewing machine", ["A mechanical sewing machine with 32 stitch patterns", "one-step buttonhole and an automatic needle threader", "free arm for sleeves and trouser legs", "comes with four presser feet and a dust cover"], 179),
    ("ArcLight Gaming Monitor", "gaming monitor", ["A 27-inch 1440p gaming monitor with a 165 Hz refresh rate", "1 ms response time and adaptive sync", "height-adjustable stand that tilts and swivels", "two HDMI ports and one DisplayPort"], 279),
    ("GreenPath Compost Bin", "compost bin", ["A 330-litre garden compost bin made from recycled plastic", "a lid that locks against animals", "a hatch at the bottom to take out finished compost", "no base, so worms can get in"], 49),
    ("TinyChef Kids Cooking Set", "kids cooking set", ["A cooking set for children aged 5 and up", "includes a nylon knife, a peeler, a whisk and an apron", "a recipe book with 20 simple dishes", "every tool is dishwasher safe"], 29),
    ("ThermoLock Food Flask", "food flask", ["A 500 ml vacuum-insulated food flask", "keeps food hot for 9 hours or cold for 12", "wide mouth that is easy to fill and clean", "folding spoon in the lid"], 27),
    ("SilverLine Robot Window Cleaner", "window cleaner", ["A robot window cleaner that sticks to glass by suction", "cleans a square metre in about two minutes", "safety rope and a backup battery in case of a power cut", "washable microfibre pads and a remote control"], 249),
    ("EchoPlay Vinyl Turntable", "turntable", ["A belt-drive turntable that plays records at 33 and 45 rpm", "built-in phono stage and Bluetooth output", "aluminium platter and a replaceable cartridge", "dust cover included"], 199),
    ("WildTrail Trail Camera", "trail camera", ["A wildlife camera that takes 24-megapixel photos and 1080p video", "infrared night vision up to 20 m without a visible flash", "runs for up to six months on eight AA batteries", "waterproof to IP66 and comes with a strap"], 79),
]

SECOND_QUESTIONS = [
    "Is it safe?",
    "How long does the battery last?",
    "Does it come with everything I need to start?",
    "Can I use it every day?",
    "What is the most important thing it does well?",
    "Who should not buy it?",
    "Is it easy to repair?",
    "How much space does it take up?",
    "Is there anything I need to buy separately?",
    "Could you explain its features to someone who is not technical?",
    "Is it good value for the money?",
    "How do I get the best results from it?",
    "What do I need to know about looking after it?",
    "Would it suit a small home?",
    "What are three reasons to buy it?",
    "Is it suitable for an older person?",
    "Write a short review of it for a shop's website.",
    "How does it work?",
    "Can I give it as a wedding present?",
    "What would you ask the seller before buying it?",
]

# Things the open templates of the second set ask about (none of them a benchmark subject);
# `{a}` in a template is the article the thing takes.
SECOND_ITEMS = [
    "air conditioner", "dehumidifier", "electric blanket", "heated clothes airer", "steam iron",
    "cordless vacuum cleaner", "carpet cleaner", "juicer", "stand mixer", "pasta maker",
    "waffle iron", "sandwich toaster", "pizza oven", "barbecue grill", "smoker", "deep fryer",
    "soda maker", "wine cooler", "chest freezer", "water softener", "electric toothbrush for a child",
    "hair dryer", "hair straightener", "beard trimmer", "electric shaver", "massage gun",
    "fitness tracker", "heart rate monitor", "bike computer", "turbo trainer", "climbing harness",
    "ski jacket", "pair of snow boots", "wetsuit", "surfboard", "kayak paddle", "life jacket",
    "hammock", "camping chair", "solar charger", "portable power station",
    "walkie-talkie", "metal detector", "microscope for a child", "keyboard instrument", "ukulele",
    "acoustic guitar", "drum kit", "microphone for podcasts", "pair of studio headphones",
    "e-bike", "folding bike", "child's scooter", "trampoline", "paddling pool", "sandpit",
    "garden shed", "greenhouse", "leaf blower", "chainsaw", "wheelbarrow", "compost bin",
    "rain barrel", "bird feeder", "outdoor lighting", "security camera", "safe for valuables",
    "label printer", "paper shredder", "laminator", "document scanner", "monitor arm",
    "laptop stand", "USB hub", "network storage drive", "mesh wifi system", "smart speaker",
    "smart light bulb", "smart thermostat", "electric toothbrush head", "water flosser",
    "baby bath", "changing table", "cot", "nursing chair", "travel cot", "child's desk",
]

SECOND_OPEN_TEMPLATES = [
    "I am thinking of buying {a} {item}. What questions should I ask first?",
    "What is the most common reason people return {a} {item}?",
    "Explain to a first-time buyer what to look for in {a} {item}.",
    "How do I know when it is time to replace my {item}?",
    "What makes one {item} safer than another?",
    "Can you compare a basic and a premium {item} for me?",
    "How can I make my {item} use less energy?",
    "What should I check when {a} {item} arrives?",
    "Give me a short guide to using {a} {item} for the first time.",
    "What do reviewers usually complain about with {a} {item}?",
    "Where is the best place in my home for {a} {item}?",
    "What do I need to know about the warranty of {a} {item}?",
    "How do I pick the right size of {item}?",
    "Is {a} {item} a good idea in a small flat?",
    "What should I avoid doing with a new {item}?",
    "How do I store {a} {item} when I am not using it?",
]

SECOND_ADVICE_PER_TEMPLATE = 30

SECOND_ADVICE_TEMPLATES = [
    ("How do I cook {dish} for the first time?", ["dish"]),
    ("Can you give me a simple recipe for {dish}?", ["dish"]),
    ("What goes well with {dish}?", ["dish"]),
    ("Explain {concept} in a way a teenager would understand.", ["concept"]),
    ("What is {concept}, and why does it matter?", ["concept"]),
    ("Why does {phenomenon}?", ["phenomenon"]),
    ("Can you explain why {phenomenon}?", ["phenomenon"]),
    ("Write {text_task}.", ["text_task"]),
    ("Help me write {text_task}.", ["text_task"]),
    ("What are the first steps to {project}?", ["project"]),
    ("How long does it usually take to {project}, and what does it cost?", ["project"]),
    ("How should I prepare for {event}?", ["event"]),
    ("What should I bring to {event}?", ["event"]),
    ("What are good ways to keep {audience} busy on {occasion}?", ["audience", "occasion"]),
    ("What is a good gift for {recipient} for {gift_occasion}?", ["recipient", "gift_occasion"]),
    ("How do I look after {living_thing}?", ["living_thing"]),
    ("What does {living_thing} need to stay healthy?", ["living_thing"]),
    ("What are the health benefits of {habit}?", ["habit"]),
    ("How do I make {habit} part of my routine?", ["habit"]),
    ("What is the history of {history_topic} in a few paragraphs?", ["history_topic"]),
    ("Tell me something interesting about {history_topic}.", ["history_topic"]),
    ("How do I use {software_task}?", ["software_task"]),
    ("What are some tips for {work_task}?", ["work_task"]),
    ("I have to {work_task} next week. How should I prepare?", ["work_task"]),
    ("How do I fix {repair} myself?", ["repair"]),
    ("Should I call a professional for {repair}, or can I do it myself?", ["repair"]),
]

SECOND_SLOTS = {
    "dish": ["a mushroom risotto", "a vegetable curry", "pancakes", "a roast chicken", "lentil soup",
             "a Greek salad", "fried rice", "banana bread", "a fish pie", "homemade pizza dough",
             "a chilli con carne", "scrambled eggs", "a lemon tart", "hummus", "a beef stew",
             "vegetable lasagne", "chocolate chip cookies", "a stir-fry with tofu", "guacamole",
             "apple crumble", "a Spanish omelette", "overnight oats", "a tomato sauce for pasta",
             "flatbreads", "a carrot cake"],
    "concept": ["inflation", "interest rates", "supply and demand", "a carbon footprint",
                "renewable energy", "cloud storage", "two-factor authentication", "a pension",
                "a credit score", "the greenhouse effect", "machine learning", "encryption",
                "a balanced diet", "compound interest", "a budget deficit", "biodiversity",
                "an index fund", "the immune system", "a tax return", "a mortgage rate",
                "a food chain", "the stock market", "a democracy", "recycling symbols",
                "a calorie"],
    "phenomenon": ["the sky look blue", "bread go stale", "ice float on water", "the moon change shape",
                   "a phone battery get weaker over time", "milk go sour", "onions make people cry",
                   "the sea taste salty", "leaves change colour in autumn", "cats purr",
                   "a rainbow appear after rain", "metal feel colder than wood", "we get jet lag",
                   "popcorn pop", "a kettle make noise before it boils", "dough rise",
                   "the wind blow", "glasses fog up in the cold", "thunder follow lightning",
                   "coffee keep people awake", "a bicycle stay upright", "socks go missing in the wash"],
    "text_task": ["a short welcome message for new members of a book club",
                  "an email asking my manager for a day off", "a thank-you card for a teacher",
                  "a two-line advert for a garage sale", "a product description for handmade candles",
                  "a polite reminder to a friend who owes me money", "a short speech for a friend's birthday",
                  "a note to my neighbours about a party on Saturday", "a cover letter for a job in a shop",
                  "a short bio for my photography website", "a message to cancel a gym membership",
                  "an apology to a customer whose order was wrong", "a notice about a lost cat",
                  "a description of a flat for rent", "a toast for my parents' anniversary",
                  "instructions for feeding my cat while I am away",
                  "a reply to a customer who wants to return shoes", "a short poem about autumn",
                  "a menu description for a vegetarian burger", "a newsletter introduction for a bakery"],
    "project": ["paint a bedroom", "build a garden path", "learn to swim as an adult",
                "set up a small online shop", "renovate a bathroom", "learn basic Spanish",
                "train for a 10 km run", "start a podcast", "sell old furniture",
                "build a bookshelf", "lay a laminate floor", "make a family photo album",
                "start a savings plan", "grow vegetables from seed", "learn to touch type",
                "insulate a loft", "plan a garden party", "write a family cookbook"],
    "event": ["a job interview", "a first day at a new school", "a marathon", "a wedding abroad",
              "a long hospital stay", "a driving test", "a camping festival", "a baby's arrival",
              "a house move", "a parents' evening", "a winter storm", "a dinner with my partner's family",
              "a public speaking event", "a weekend of volunteering", "an exam week", "a charity bake sale"],
    "audience": ["two toddlers", "a group of teenagers", "my elderly parents", "children aged six to eight",
                 "a dog with lots of energy", "guests at a small party", "my nephews", "a class of ten-year-olds"],
    "occasion": ["a long train journey", "a snowy day", "a hot afternoon", "a sleepover",
                 "a power cut", "a wait at the airport", "a family reunion", "the school holidays"],
    "recipient": ["my dad", "a new neighbour", "a colleague who is retiring", "my sister",
                  "a ten-year-old", "a couple who just moved in together", "my best friend",
                  "a teacher", "my grandfather", "a host who invited me to dinner"],
    "gift_occasion": ["a birthday", "Christmas", "a graduation", "a housewarming", "a thank-you",
                      "an anniversary", "a retirement party"],
    "living_thing": ["a rabbit", "a hamster", "a budgie", "a tortoise", "a lemon tree in a pot",
                     "an orchid", "a bonsai tree", "a sourdough starter", "chickens in the garden",
                     "a rose bush", "a lawn in summer", "tomato plants", "a goldfish pond",
                     "an older dog", "a kitten", "a cactus", "herbs on a windowsill", "a guinea pig"],
    "habit": ["walking every day", "drinking more water", "stretching in the morning", "reading before bed",
              "cycling to work", "eating more vegetables", "going to bed earlier", "keeping a journal",
              "taking the stairs", "cooking at home", "spending less time on my phone",
              "doing yoga", "swimming once a week", "eating breakfast"],
    "history_topic": ["the printing press", "the bicycle", "chocolate", "the telephone", "coffee houses",
                      "the Olympic Games", "paper money", "the light bulb", "public libraries",
                      "the postal service", "pizza", "the railway", "jeans", "the umbrella",
                      "board games", "the compass", "the supermarket", "vaccination", "tea in Britain",
                      "the calendar"],
    "software_task": ["a spreadsheet to track my spending", "a password manager",
                      "cloud backups for my photos", "video calls with my grandparents",
                      "a shared family calendar", "a to-do list app", "online banking safely",
                      "a photo editing app", "a route planner for cycling", "automatic bill payments",
                      "a language learning app"],
    "work_task": ["give a presentation to my team", "run my first meeting", "ask for a pay rise",
                  "write a report", "train a new colleague", "handle an angry customer",
                  "work with a difficult colleague", "plan a project with a tight deadline",
                  "answer emails faster", "start a new job remotely", "give feedback to someone",
                  "take notes in meetings", "negotiate with a supplier", "organise a team event"],
    "repair": ["a dripping tap", "a squeaky door", "a running toilet", "a flat bicycle tyre",
               "a wobbly table", "a blocked sink", "a cracked phone screen", "a broken zip",
               "peeling wallpaper", "a loose door handle", "a hole in a wall", "a stuck window",
               "a tripped fuse", "a radiator that stays cold", "a torn sofa cushion", "a slow laptop"],
}

SECOND_GENERAL = [
    "What is the difference between a virus on a computer and a virus in the body?",
    "How do I make a weekly cleaning schedule for a family of four?",
    "Give me ten ideas for cheap date nights at home.",
    "What are the rules of a simple card game I can play with children?",
    "How do I calculate how much paint I need for a wall?",
    "What questions should I ask at a parents' meeting?",
    "How do I teach my child to save pocket money?",
    "Explain how to read a train timetable.",
    "What should I do if I lose my wallet while travelling?",
    "How can I make friends after moving to a new town?",
    "What is the best way to learn the names of the planets?",
    "Give me a simple plan to declutter my home in a month.",
    "How do I write a shopping list that saves money?",
    "What is the difference between a hurricane and a tornado?",
    "How do I keep a conversation going with someone I just met?",
    "Explain what a food label's best-before date means.",
    "How can I be more patient with my children?",
    "What are some good questions to ask a doctor at a check-up?",
    "How do I make a simple budget spreadsheet?",
    "Give me a three-day itinerary for a city I have never visited.",
    "What is a healthy amount of screen time for a child?",
    "Write a short story for a five-year-old about a brave snail.",
    "What are some tips for driving at night?",
    "How do I prepare my car for winter?",
    "What is the difference between a cold and the flu?",
    "How do I get better at remembering names?",
    "Explain how a bill becomes a law in simple terms.",
    "What should I do in my first week at university?",
    "How can I help an elderly neighbour without being intrusive?",
    "Give me five easy ways to use less water at home.",
    "How do I start a conversation with my teenager about money?",
    "What are the basics of a good CV?",
    "How can I tell if an email is a scam?",
    "What should I do if my flight is cancelled?",
    "How do I choose a good book for a long holiday?",
    "Describe a relaxing Sunday at home.",
    "What are good stretches after a long day at a desk?",
    "How do I keep track of my spending without an app?",
    "What are the steps to change a car tyre?",
    "How do solar eclipses happen?",
    "What is a fair way to divide chores between flatmates?",
    "Write a short, friendly out-of-office message.",
    "How do I prepare a room for a newborn baby?",
    "Give me tips for a long walk with a young child.",
    "What are the most common mistakes new gardeners make?",
    "How do I plan a surprise party without the guest finding out?",
    "What is the difference between a museum and a gallery?",
    "How can I keep my kitchen free of ants?",
    "Explain what happens to my parcel after I order it online.",
]


def article(noun):
    """The indefinite article before `noun` (by its first letter: "an e-bike", "a USB hub")."""
    return "an" if noun[0] in "aeio" else "a"


def expand(templates, slots, rng, per_template):
    """A seeded sample of every template's combinations (each template names its slot lists)."""
    rows = []
    for template, names in templates:
        combos = [[]]
        for name in names:
            combos = [c + [v] for c in combos for v in slots[name]]
        prompts = []
        for values in combos:
            prompt = template.format(**dict(zip(names, values)))
            prompts.append(prompt[0].upper() + prompt[1:])
        rows.extend(rng.sample(prompts, min(per_template, len(prompts))))
    return rows


def second_set():
    """The second set's rows, shuffled among themselves."""
    rng = random.Random(SECOND_SEED)
    rows = []
    questions = QUESTIONS + SECOND_QUESTIONS
    for product in SECOND_PRODUCTS:
        for question in rng.sample(questions, SECOND_QUESTIONS_PER_PRODUCT):
            rows.append({"kind": "grounded", "prompt": grounded(product, question)})
    opens = [
        template.format(item=item, a=article(item))
        for item in SECOND_ITEMS
        for template in rng.sample(SECOND_OPEN_TEMPLATES, 7)
    ]
    opens += SECOND_GENERAL
    opens += expand(SECOND_ADVICE_TEMPLATES, SECOND_SLOTS, rng, SECOND_ADVICE_PER_TEMPLATE)
    for prompt in opens:
        rows.append({"kind": "open", "prompt": prompt})
    rng.shuffle(rows)
    return rows


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "parallel-decode/data/medusa_train_prompts.jsonl"
    rng = random.Random(SEED)
    rows = []
    for product in PRODUCTS:
        for question in rng.sample(QUESTIONS, 20):
            rows.append({"kind": "grounded", "prompt": grounded(product, question)})
    for item in ITEMS:
        for template in rng.sample(OPEN_TEMPLATES, 8):
            rows.append({"kind": "open", "prompt": template.format(item=item)})
    for prompt in GENERAL:
        rows.append({"kind": "open", "prompt": prompt})
    everyday = EVERYDAY + expand(ADVICE_TEMPLATES, SLOTS, rng, ADVICE_PER_TEMPLATE)
    for prompt in everyday:
        rows.append({"kind": "open", "prompt": prompt})
    rng.shuffle(rows)
    second = second_set()
    advice = everyday + [row["prompt"] for row in second if row["kind"] == "open"]
    for prompt in advice:
        if any(subject in prompt.lower() for subject in BENCH_SUBJECTS):
            raise SystemExit(f"an advice prompt is about a benchmark subject: {prompt!r}")
    # The first set repeats a few prompts (kept: changing it would change its distilled
    # chunks); the second set repeats none, of its own or of the first set's.
    seen = {row["prompt"].strip().lower() for row in rows}
    for row in second:
        key = row["prompt"].strip().lower()
        if key in seen:
            raise SystemExit(f"a prompt of the second set appears twice: {row['prompt']!r}")
        seen.add(key)
    rows += second
    bench = bench_prompts()
    for row in rows:
        if row["prompt"].strip().lower() in bench:
            raise SystemExit(f"a training prompt is a benchmark prompt: {row['prompt']!r}")
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} prompts to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
