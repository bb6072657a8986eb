#!/usr/bin/env python3
"""Regenerates catalog.toml from ai-robots-txt.json plus hand-kept entries.

    python3 rules/data/gen_catalog.py > rules/data/catalog.toml

ai-robots-txt.json is the ai.robots.txt project's robots.json (MIT,
"Copyright (c) 2024 ai.robots.txt"), snapshot of commit 738c80df,
2026-08-22, 166 entries. Its free-text `function` is mapped to a category
here; hand overrides win. Generic words are marked `strict`: matched only
case-sensitively as a `Name/version` product token, and weighted low so that
they never block on their own.
"""
import json, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
src = json.load(open(os.path.join(HERE, "ai-robots-txt.json")))

# Only words that are common English or that real browser strings carry
# (Electron apps: `Code/1.85 Chrome/…`, `Trae/1.1 Chrome/…`). Invented names
# (Devin, newsai, Thinkbot, …) are matched like any other token.
GENERIC = {"Code", "Spider", "Operator", "Cursor", "Trae", "LCC", "OpenAI", "YaK"}
ROBOTS_ONLY = {"Google-Extended", "Applebot-Extended", "Webzio-Extended", "webzio-extended",
               "YandexAdditional"}
OVERRIDE = {
    "Applebot": "search-engine", "PetalBot": "search-engine",
    "facebookexternalhit": "social-preview", "Scrapy": "http-library",
    "Lightpanda": "headless-browser", "SemrushBot-SWA": "seo",
    "GoogleOther": "ai-training", "GoogleOther-Image": "ai-training", "GoogleOther-Video": "ai-training",
    "OAI-SearchBot": "ai-search", "PerplexityBot": "ai-search", "Claude-SearchBot": "ai-search",
    "meta-webindexer": "ai-search", "YouBot": "ai-search", "Amazonbot": "ai-training",
    "cohere-ai": "ai-assistant", "atlassian-bot": "ai-assistant", "Andibot": "ai-search",
    "iaskspider": "ai-search", "iAskBot": "ai-search",
}

def category(name, fn):
    if name in OVERRIDE:
        return OVERRIDE[name]
    f = fn.lower()
    if name.endswith("-User") or "assistant" in f or "agent" in f or "user-initia" in f or "user prompts" in f:
        return "ai-assistant"
    if "search" in f:
        return "ai-search"
    return "ai-training"

def operator(op):
    m = re.match(r"\[([^\]]+)\]", op)
    op = m.group(1) if m else op
    return "unknown" if op.lower().startswith("unclear") else op.split(",")[0].strip()[:60]

entries = {}
for name, v in src.items():
    token = re.sub(r"[/ ]\d+(\.\d+)*$", "", name)  # "iaskspider/2.0", "Brightbot 1.0"
    key = token.lower()
    e = entries.setdefault(key, {"name": token, "operator": operator(v["operator"]),
                                 "category": category(token, v["function"]),
                                 "ua": [], "robots": [], "strict": token in GENERIC,
                                 "source": "ai.robots.txt"})
    if name not in e["robots"]:
        e["robots"].append(name)
    if token in ROBOTS_ONLY:
        continue
    if token not in e["ua"]:
        e["ua"].append(token)

def add(name, operator, category, ua, robots=(), rdns=(), ip_ranges=(), strict=False):
    entries[name.lower()] = {"name": name, "operator": operator, "category": category,
                             "ua": list(ua), "robots": list(robots), "strict": strict,
                             "rdns": list(rdns), "ip_ranges": list(ip_ranges), "source": "fixative"}

# Search engines (verify by IP ranges or forward-confirmed reverse DNS).
add("Googlebot", "Google", "search-engine", ["Googlebot", "Googlebot-Image", "Googlebot-Video", "Googlebot-News", "Storebot-Google", "Google-InspectionTool"],
    ["Googlebot", "Googlebot-Image"], rdns=["googlebot.com", "google.com"], ip_ranges=["googlebot.json"])
add("bingbot", "Microsoft", "search-engine", ["bingbot", "BingPreview", "adidxbot"], ["bingbot"], rdns=["search.msn.com"], ip_ranges=["bingbot.json"])
add("DuckDuckBot", "DuckDuckGo", "search-engine", ["DuckDuckBot"], ["DuckDuckBot"])
add("YandexBot", "Yandex", "search-engine", ["YandexBot", "YandexImages", "YandexMobileBot"], ["Yandex"], rdns=["yandex.ru", "yandex.net", "yandex.com"])
add("Baiduspider", "Baidu", "search-engine", ["Baiduspider"], ["Baiduspider"], rdns=["crawl.baidu.com", "crawl.baidu.jp"])
add("Slurp", "Yahoo", "search-engine", ["Yahoo! Slurp"], ["Slurp"], rdns=["crawl.yahoo.net"])
add("Qwantbot", "Qwant", "search-engine", ["Qwantbot", "Qwantify"], ["Qwantbot"])
add("MojeekBot", "Mojeek", "search-engine", ["MojeekBot"], ["MojeekBot"])
add("SeznamBot", "Seznam", "search-engine", ["SeznamBot"], ["SeznamBot"])
add("Naver Yeti", "Naver", "search-engine", ["Yeti"], ["Yeti"], strict=True)
entries["applebot"].update({"rdns": ["applebot.apple.com"]})
# Social previews.
for n, op, ua in [("Twitterbot", "X", ["Twitterbot"]), ("Slackbot", "Slack", ["Slackbot", "Slack-ImgProxy"]),
                  ("Discordbot", "Discord", ["Discordbot"]), ("LinkedInBot", "LinkedIn", ["LinkedInBot"]),
                  ("TelegramBot", "Telegram", ["TelegramBot"]), ("WhatsApp", "Meta", ["WhatsApp"]),
                  ("Pinterestbot", "Pinterest", ["Pinterestbot"]), ("redditbot", "Reddit", ["redditbot"]),
                  ("vkShare", "VK", ["vkShare"]), ("Embedly", "Embedly", ["Embedly"]),
                  ("Mastodon", "Mastodon", ["Mastodon"]), ("SkypeUriPreview", "Microsoft", ["SkypeUriPreview"])]:
    add(n, op, "social-preview", ua, [n], strict=(n in {"WhatsApp", "Mastodon"}))
# Archivers, SEO, monitoring.
add("ia_archiver", "Internet Archive", "archiver", ["ia_archiver", "archive.org_bot"], ["ia_archiver", "archive.org_bot"])
add("Arquivo.pt", "Arquivo.pt", "archiver", ["arquivo-web-crawler"], ["Arquivo.pt"])
for n, op in [("SemrushBot", "Semrush"), ("AhrefsBot", "Ahrefs"), ("MJ12bot", "Majestic"), ("DotBot", "Moz"), ("BLEXBot", "WebMeUp"), ("DataForSeoBot", "DataForSEO"), ("serpstatbot", "Serpstat")]:
    add(n, op, "seo", [n], [n])
for n, op in [("UptimeRobot", "UptimeRobot"), ("Pingdom", "SolarWinds"), ("StatusCake", "StatusCake"), ("Site24x7", "Zoho"), ("Better Uptime Bot", "Better Stack")]:
    add(n, op, "monitoring", [n.replace(" ", " ")], [])
entries["pingdom"]["ua"] = ["Pingdom.com_bot"]
# HTTP libraries and scraping tools.
for n, ua in [("curl", ["curl"]), ("Wget", ["Wget"]), ("python-requests", ["python-requests"]),
              ("python-urllib", ["Python-urllib"]), ("aiohttp", ["aiohttp", "Python/3"]), ("httpx", ["python-httpx"]),
              ("Go-http-client", ["Go-http-client"]), ("okhttp", ["okhttp"]), ("Java", ["Java"]),
              ("Apache-HttpClient", ["Apache-HttpClient"]), ("node-fetch", ["node-fetch", "undici"]),
              ("axios", ["axios"]), ("libwww-perl", ["libwww-perl"]), ("Ruby", ["Ruby"]), ("Faraday", ["Faraday"]),
              ("PHP", ["GuzzleHttp", "PHP"]), ("HTTPie", ["HTTPie"]), ("colly", ["colly"]), ("Nutch", ["Nutch"]),
              ("Heritrix", ["heritrix"]), ("reqwest", ["reqwest"])]:
    add(n, "various", "http-library", ua, [], strict=n in {"Java", "Ruby", "PHP", "aiohttp"} )
entries["aiohttp"]["ua"] = ["aiohttp"]
entries["aiohttp"]["strict"] = False
add("HeadlessChrome", "various", "headless-browser", ["HeadlessChrome"], [])
add("PhantomJS", "various", "headless-browser", ["PhantomJS"], [])
add("Puppeteer/Playwright", "various", "headless-browser", ["Puppeteer", "Playwright", "puppeteer-extra"], [])
add("Selenium", "various", "headless-browser", ["Selenium", "webdriver"], [])
add("img2dataset", "rom1504", "ai-training", ["img2dataset"], ["img2dataset"])

# Published IP-range files (`fixative ip-ranges update` fetches them into
# detection.ip_ranges_dir). A crawler is checked against a file only once
# it is loaded (shipped snapshot or fetched copy).
SOURCES = [
    ("googlebot.json", "Google", "https://developers.google.com/static/crawling/ipranges/common-crawlers.json"),
    ("google-special-crawlers.json", "Google", "https://developers.google.com/static/crawling/ipranges/special-crawlers.json"),
    ("google-user-triggered-fetchers.json", "Google", "https://developers.google.com/static/crawling/ipranges/user-triggered-fetchers.json"),
    ("bingbot.json", "Microsoft", "https://www.bing.com/toolbox/bingbot.json"),
    ("gptbot.json", "OpenAI", "https://openai.com/gptbot.json"),
    ("searchbot.json", "OpenAI", "https://openai.com/searchbot.json"),
    ("chatgpt-user.json", "OpenAI", "https://openai.com/chatgpt-user.json"),
    ("perplexitybot.json", "Perplexity", "https://www.perplexity.com/perplexitybot.json"),
    ("perplexity-user.json", "Perplexity", "https://www.perplexity.com/perplexity-user.json"),
    ("applebot.json", "Apple", "https://search.developer.apple.com/applebot.json"),
    ("ccbot.json", "Common Crawl", "https://index.commoncrawl.org/ccbot.json"),
]
for name, files in [("GPTBot", ["gptbot.json"]), ("OAI-SearchBot", ["searchbot.json"]),
                    ("ChatGPT-User", ["chatgpt-user.json"]), ("PerplexityBot", ["perplexitybot.json"]),
                    ("Perplexity-User", ["perplexity-user.json"]), ("Applebot", ["applebot.json"]),
                    ("CCBot", ["ccbot.json"])]:
    entries[name.lower()]["ip_ranges"] = files

# Web Bot Auth: the `Signature-Agent` hosts whose verified signatures name
# this crawler (the agent's key directory is at
# https://<host>/.well-known/http-message-signatures-directory).
for name, hosts in [("ChatGPT Agent", ["chatgpt.com"])]:
    entries[name.lower()]["signature_agents"] = hosts

def q(s):
    return json.dumps(s, ensure_ascii=False)

out = sys.stdout
out.write("# Fixative crawler catalog. Generated by gen_catalog.py from ai-robots-txt.json\n"
          "# (ai.robots.txt, MIT, commit 738c80df, 2026-08-22) and hand-kept entries.\n"
          "# Edit gen_catalog.py, not this file. Fields: see rules/src/catalog.rs.\n\n")
for e in sorted(entries.values(), key=lambda e: (e["category"], e["name"].lower())):
    out.write("[[crawler]]\n")
    out.write(f"name = {q(e['name'])}\noperator = {q(e['operator'])}\ncategory = {q(e['category'])}\n")
    out.write(f"ua = [{', '.join(q(u) for u in e['ua'])}]\n")
    out.write(f"robots = [{', '.join(q(r) for r in e['robots'])}]\n")
    if e.get("strict"):
        out.write("strict = true\n")
    if e.get("rdns"):
        out.write(f"rdns = [{', '.join(q(r) for r in e['rdns'])}]\n")
    if e.get("ip_ranges"):
        out.write(f"ip_ranges = [{', '.join(q(r) for r in e['ip_ranges'])}]\n")
    if e.get("signature_agents"):
        out.write(f"signature_agents = [{', '.join(q(r) for r in e['signature_agents'])}]\n")
    out.write(f"source = {q(e['source'])}\n\n")
for f, op, url in SOURCES:
    out.write(f"[[ip_range_source]]\nfile = {q(f)}\noperator = {q(op)}\nurl = {q(url)}\n\n")
