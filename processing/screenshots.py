"""Screenshots of small web pages before and after one element-level change, rendered by headless Chromium.

A page is drawn from a template family (a sign-in form, a settings form, a dashboard, ...) with random words, names,
numbers, colours and layout, as a tree of elements that carry `data-el` ids. A change targets one element: its
colour (`recolor`), its words (`text`), its presence (`add`, `remove`) or its place (`move`); `none` renders the same
page twice. The ground truth names the element as a user would (a plain noun, its label, its colours and its place on
a 3x3 grid of the screenshot), and the region is the element's box as the browser measured it. The template
families are split between train, validation and test so that evaluation sees page layouts never trained on.

Pages are self-contained (inline CSS, generic font families, no images or web fonts), so the same seed gives the
same pixels. Rendering needs Chromium and Playwright's client library (the `browser-tests` extra).
"""

import copy
import html
import io
import math
import shutil
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--font-render-hinting=none",  # glyph positions that do not depend on the machine's hinting settings
)
LAYOUT_PX = 448  # pages are laid out for a 448x448 CSS px viewport; other screenshot sizes scale the device pixels
CHANGE_TYPES = ("recolor", "text", "add", "remove", "move", "none")
ELEMENTS = ("button", "banner", "avatar", "badge", "heading", "label", "row", "card", "link", "image", "input")
GRID = (("top left", "top", "top right"), ("left", "center", "right"), ("bottom left", "bottom", "bottom right"))
PALETTE = {
    "red": "#dc2626",
    "orange": "#ea580c",
    "yellow": "#facc15",
    "green": "#16a34a",
    "teal": "#0d9488",
    "blue": "#2563eb",
    "purple": "#7c3aed",
    "pink": "#db2777",
    "gray": "#6b7280",
    "black": "#111827",
}
FONTS = ("sans-serif", "serif", "monospace")  # generic families only: fixed fonts on a given machine
DILATION_PX = 3  # anti-aliased edges may reach this far past an element's box
MIN_CHANGED_PIXELS = 8  # fewer differing pixels inside the region count as an invisible change
TARGETS_PER_PAGE = 6  # elements tried on one page before drawing another page
PAGES_PER_PAIR = 20

# --- words -----------------------------------------------------------------------------------------------------

WORDS = (
    "the", "a", "of", "to", "and", "in", "for", "on", "with", "new", "team", "plan", "data", "week", "report",
    "update", "money", "time", "home", "city", "park", "road", "music", "market", "coffee", "garden", "river",
    "light", "simple", "quick", "small", "quiet", "early", "late", "open", "close", "fast", "slow", "warm",
    "cold", "office", "school", "travel", "book", "phone", "photo", "share", "idea", "price", "order", "ticket",
    "help", "guide", "notes", "summer", "winter", "morning", "evening", "project", "design", "launch", "review",
    "people", "friends", "family", "meeting", "budget", "health", "sport", "story", "local", "world",
)  # fmt: skip
FIRST_NAMES = (
    "Maya", "Liam", "Ava", "Noah", "Emma", "Omar", "Zoe", "Ivan", "Lena", "Ravi", "Sara", "Tom", "Nina", "Leo",
    "Aisha", "Ben", "Chloe", "Diego", "Hana", "Kofi",
)  # fmt: skip
LAST_NAMES = (
    "Chen", "Smith", "Garcia", "Okafor", "Novak", "Patel", "Kim", "Rossi", "Jones", "Silva", "Berg", "Khan", "Lopez",
    "Weber", "Sato", "Moreau",
)  # fmt: skip
BUTTONS = (
    "Save", "Cancel", "Submit", "Delete", "Edit", "Share", "Send", "Next", "Back", "Apply", "Reset", "Continue",
    "Upload", "Export", "Invite", "Follow", "Reply", "Confirm", "Close", "Update", "Retry", "Archive", "Publish",
    "Sign in", "Sign up", "Log out", "Buy now", "Add", "Open", "Done", "Like", "Subscribe",
)  # fmt: skip
BADGES = (
    "New", "Done", "Urgent", "Late", "Draft", "Open", "Closed", "Sale", "Pro", "Beta", "Hot", "Active", "Paused",
    "Review", "Blocked", "Low", "High", "Free", "Admin", "Top", "Live",
)  # fmt: skip
FIELDS = (
    "Email", "Password", "Username", "Full name", "Phone", "City", "Country", "Language", "Time zone", "Company",
    "Website", "Nickname",
)  # fmt: skip
LINKS = ("Forgot password", "Learn more", "View all", "Help", "Privacy", "Terms", "Contact us", "Read more", "Details")
COMMENT_LINKS = ("Reply", "Like", "Share", "Report", "Edit", "Quote", "Hide")
HEADINGS = (
    "Sign in", "Welcome back", "Log in", "Create account", "Join us", "Settings", "Account settings", "Preferences",
    "Overview", "Dashboard", "Analytics", "My tasks", "Today", "Groceries", "Inbox", "Messages", "Chats",
    "Team board", "Sprint plan", "Projects", "Notifications", "Profile", "Shop", "New arrivals", "Best sellers",
    "Comments", "Discussion", "Replies",
)  # fmt: skip
ARTICLE_TITLES = (
    "City opens new park", "Ten tips for sleep", "A week in Lisbon", "Why cats purr", "Markets rally again",
    "The quiet library", "Coffee at dawn", "Trains are back", "How bees talk", "Notes on design",
)  # fmt: skip
PERIODS = ("Last 7 days", "This month", "Today", "This year", "Last quarter", "Yesterday")
STAT_LABELS = (
    "Revenue", "Users", "Orders", "Visits", "Sales", "Signups", "Refunds", "Sessions", "Clicks", "Downloads",
    "Tickets", "Returns",
)  # fmt: skip
TASKS = (
    "Buy milk", "Call the bank", "Fix the sink", "Pay rent", "Book flights", "Water plants", "Send invoice",
    "Clean desk", "Walk the dog", "Renew passport", "Plan trip", "Read report", "Update resume", "Order pizza",
    "Wash car", "Review code", "Write tests", "Email Anna", "Call Sam", "Bake bread",
)  # fmt: skip
BOARD_TASKS = (
    "Fix bug", "Write tests", "Deploy app", "Update docs", "Plan sprint", "Review PR", "Design logo", "Call client",
    "Fix login", "Add search", "Clean up", "Ship v2", "New icons", "Hire intern",
)  # fmt: skip
COLUMNS = ("To do", "Doing", "Done", "Review", "Backlog", "Blocked", "Ideas", "Testing")
TAGS = ("News", "Tech", "Travel", "Food", "Health", "Sports", "Music", "Science", "Design", "Opinion")
PRODUCTS = (
    "Desk lamp", "Travel mug", "Smart watch", "Wool scarf", "Wall clock", "Gym bag", "Tea kettle", "Notebook",
    "Speaker", "Backpack", "Sneakers", "Desk plant", "Headphones", "Camera",
)  # fmt: skip
CITIES = ("Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Berlin", "Austin", "Dublin", "Pune", "Seoul")
BANNERS = {  # kind -> (colour, messages)
    "error": ("red", ("Invalid password", "Something went wrong", "Payment failed", "Connection lost", "Try again")),
    "success": ("green", ("Changes saved", "Payment received", "Profile updated", "Message sent", "Order placed")),
    "warning": ("orange", ("Trial ends soon", "Low disk space", "Unsaved changes", "Password expires soon")),
    "info": ("blue", ("New version available", "Maintenance tonight", "Welcome to the beta", "Tips are on")),
}

# --- pages as element trees --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Theme:
    dark: bool
    font: str
    font_px: int
    radius: int
    pad: int
    gap: int
    accent: str  # the palette colour of primary buttons
    bg: str
    surface: str
    text: str
    muted: str
    border: str

    def colors(self, role: str = "background") -> tuple[str, ...]:
        """The palette colours that stand out on this theme: black vanishes on dark pages, yellow text on light."""
        hidden = {"black"} if self.dark else ({"yellow"} if role == "text" else set())
        return tuple(c for c in PALETTE if c not in hidden)


def random_theme(rng: np.random.Generator) -> Theme:
    dark = bool(rng.random() < 0.3)
    theme = {
        "dark": dark,
        "font": _choice(rng, FONTS),
        "font_px": int(rng.integers(12, 16)),
        "radius": int(_choice(rng, (0, 3, 6, 8, 12))),
        "pad": int(rng.integers(12, 25)),
        "gap": int(rng.integers(8, 15)),
        "accent": _choice(rng, ("blue", "purple", "teal", "green", "pink", "orange") + (() if dark else ("black",))),
    }
    if dark:
        colours = {"surface": "#1f2937", "text": "#f3f4f6", "muted": "#9ca3af", "border": "#374151"}
        return Theme(**theme, bg=_choice(rng, ("#111827", "#0f172a", "#18181b")), **colours)
    colours = {"surface": "#ffffff", "text": "#111827", "muted": "#6b7280", "border": "#d1d5db"}
    return Theme(**theme, bg=_choice(rng, ("#ffffff", "#f3f4f6", "#f8fafc", "#eef2f7")), **colours)


@dataclass
class Element:
    """One HTML element. Elements a change may target have a `noun` and list the `changes` they allow."""

    tag: str = "div"
    style: dict[str, str] = field(default_factory=dict)
    children: list["Element"] = field(default_factory=list)
    text: str = ""
    noun: str = ""  # one of ELEMENTS
    label: str = ""  # its words, or whose avatar it is
    kind: str = ""  # a banner's kind (error, success, ...)
    color: str = ""  # the palette colour it shows
    color_role: str = ""  # "background" or "text": what `color` paints
    vocab: tuple[str, ...] = ()  # the words a text change draws from
    changes: frozenset[str] = frozenset()
    move_group: str = ""  # containers of one group may trade children (the columns of a board)
    el: str = ""  # the data-el id

    def walk(self) -> Iterator["Element"]:
        yield self
        for child in self.children:
            yield from child.walk()

    def html(self) -> str:
        style = ";".join(f"{key}:{value}" for key, value in self.style.items())
        inner = html.escape(self.text) + "".join(child.html() for child in self.children)
        return f'<{self.tag} data-el="{self.el}" style="{html.escape(style)}">{inner}</{self.tag}>'


@dataclass
class AddSite:
    """Where an element may appear: `make(rng)` builds it, inserted at `index` among `parent`'s children (-1: last)."""

    parent: Element
    index: int
    make: Callable[[np.random.Generator], Element]


@dataclass
class Page:
    family: str
    theme: Theme
    root: Element
    add_sites: list[AddSite]

    def __post_init__(self):
        number(self.root, "e")

    def html(self, root: Element | None = None) -> str:
        theme = self.theme
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><style>"
            # no caret, animation or transition can make two renders of one page differ
            "*{box-sizing:border-box;margin:0;padding:0;animation:none!important;transition:none!important;"
            "caret-color:transparent}"
            # a page longer than the viewport gets no scrollbar, which would narrow the layout when content grows
            f"html,body{{width:{LAYOUT_PX}px;height:{LAYOUT_PX}px;overflow:hidden}}"
            f"body{{background:{theme.bg};color:{theme.text};font-family:{theme.font};font-size:{theme.font_px}px;"
            "line-height:1.3}</style></head><body>" + (self.root if root is None else root).html() + "</body></html>"
        )


def number(root: Element, prefix: str) -> None:
    for index, element in enumerate(root.walk()):
        element.el = f"{prefix}{index}"


def find(root: Element, el: str) -> tuple[Element, Element | None]:
    """The element with data-el `el` and its parent."""
    stack: list[tuple[Element, Element | None]] = [(root, None)]
    while stack:
        element, parent = stack.pop()
        if element.el == el:
            return element, parent
        stack.extend((child, element) for child in element.children)
    raise KeyError(f"No element with data-el {el!r} on the page")


def css(**properties) -> dict[str, str]:
    """CSS properties from keyword arguments: underscores become hyphens, numbers are pixels."""
    return {
        name.replace("_", "-"): value if isinstance(value, str) else f"{value}px" for name, value in properties.items()
    }


def paint(element: Element, color: str) -> None:
    element.color = color
    if element.color_role == "background":
        element.style["background"] = PALETTE[color]
        element.style["color"] = "#111827" if color == "yellow" else "#ffffff"  # readable on the colour
    else:
        element.style["color"] = PALETTE[color]


def box(*children: Element, **style) -> Element:
    return Element(style=css(**style), children=list(children))


def hbox(*children: Element, gap: int, align: str = "center", **style) -> Element:
    return box(*children, display="flex", align_items=align, gap=gap, **style)


def vbox(*children: Element, gap: int, **style) -> Element:
    return box(*children, display="flex", flex_direction="column", gap=gap, **style)


def text_px(text: str, font_px: float, theme: Theme, bold: bool = False) -> int:
    """A generous estimate of a line's width, to give elements whose words may change a fixed width."""
    per_char = 0.62 if theme.font == "monospace" else (0.7 if bold else 0.62)
    return math.ceil(len(text) * per_char * font_px)


def fixed_text(**style) -> dict[str, str]:
    """The style of a text kept on one line: other words cannot make its element taller and push the page down."""
    return css(white_space="nowrap", overflow="hidden", **style)


def button(theme: Theme, label: str, color: str | None = None, height: int | None = None) -> Element:
    """A primary button painted `color`, or an outlined secondary button without one."""
    height = height or theme.font_px * 2 + 6
    width = text_px(max(label, "xxxxx", key=len) + "xx", theme.font_px, theme, bold=True) + 20
    style = fixed_text(
        flex="none", display="inline-block", width=width, height=height, line_height=height - 2, text_align="center",
        font_weight="600", border_radius=theme.radius, border=f"1px solid {'transparent' if color else theme.border}",
    )  # fmt: skip
    changes = {"text", "remove", "move"} | ({"recolor"} if color else set())
    element = Element(
        style=style, text=label, noun="button", label=label, vocab=BUTTONS, changes=frozenset(changes),
        color_role="background" if color else "",
    )  # fmt: skip
    if color:
        paint(element, color)
    return element


def badge(theme: Theme, label: str, color: str, vocab: tuple[str, ...] = BADGES) -> Element:
    font_px = max(10, theme.font_px - 3)
    height = font_px + 8
    width = text_px(max(label, "xxxx", key=len) + "x", font_px, theme, bold=True) + 12
    style = fixed_text(
        flex="none", display="inline-block", width=width, height=height, line_height=height, text_align="center",
        font_size=font_px, font_weight="700", border_radius=height // 2,
    )  # fmt: skip
    element = Element(
        style=style, text=label, noun="badge", label=label, vocab=vocab, color_role="background",
        changes=frozenset({"recolor", "text", "remove", "move"} if vocab else {"recolor", "remove", "move"}),
    )  # fmt: skip
    paint(element, color)
    return element


def banner(theme: Theme, kind: str, text: str) -> Element:
    height = theme.font_px * 2 + 10
    style = fixed_text(
        display="block", height=height, line_height=height, padding="0 12px", border_radius=theme.radius,
        font_weight="600", flex="none",
    )  # fmt: skip
    color, messages = BANNERS[kind]
    element = Element(
        style=style, text=text, noun="banner", label=text, kind=kind, vocab=messages, color_role="background",
        changes=frozenset({"recolor", "text", "remove"}),
    )  # fmt: skip
    paint(element, color)
    return element


def random_banner(theme: Theme, rng: np.random.Generator) -> Element:
    kind = _choice(rng, BANNERS)
    return banner(theme, kind, _choice(rng, BANNERS[kind][1]))


def avatar(theme: Theme, name: str, color: str, size: int) -> Element:
    initials = "".join(word[0] for word in name.split()[:2])
    style = css(
        flex="none", width=size, height=size, line_height=size, border_radius="50%", text_align="center",
        font_weight="700", font_size=int(size * 0.4), overflow="hidden",
    )  # fmt: skip
    element = Element(
        style=style, text=initials, noun="avatar", label=name, color_role="background",
        changes=frozenset({"recolor", "remove", "move"}),
    )  # fmt: skip
    paint(element, color)
    return element


def heading(theme: Theme, text: str, size: int, color: str | None = None, vocab=HEADINGS) -> Element:
    style = fixed_text(font_size=size, font_weight="700", line_height="1.3", flex="1", min_width=0)
    changes = {"text", "remove"} | ({"recolor"} if color else set())
    element = Element(
        style=style, text=text, noun="heading", label=text, vocab=vocab, changes=frozenset(changes),
        color_role="text" if color else "",
    )  # fmt: skip
    if color:
        paint(element, color)
    return element


def label(theme: Theme, text: str, vocab: tuple[str, ...] = (), width: int | None = None, **style) -> Element:
    """A line of words (a field name, a card title); with `vocab` a text change may replace them."""
    sizing = css(flex="none", width=width) if width else {}
    return Element(
        style={**fixed_text(**style), **sizing}, text=text, noun="label" if vocab else "", label=text, vocab=vocab,
        changes=frozenset({"text"} if vocab else ()),
    )  # fmt: skip


def link(theme: Theme, text: str, color: str, vocab: tuple[str, ...] = LINKS) -> Element:
    width = text_px(max(text, "xxxxx", key=len) + "xx", theme.font_px, theme)
    style = fixed_text(display="inline-block", flex="none", width=width, text_decoration="underline")
    element = Element(
        style=style, text=text, noun="link", label=text, vocab=vocab, color_role="text",
        changes=frozenset({"recolor", "text", "remove", "move"}),
    )  # fmt: skip
    paint(element, color)
    return element


def text_field(theme: Theme, name: str, value: str, width: int) -> Element:
    """A labelled input: the field's name above a box showing its value."""
    height = theme.font_px * 2 + 8
    value_box = box(
        width=width, height=height, line_height=height - 2, padding="0 10px", border=f"1px solid {theme.border}",
        border_radius=theme.radius, background=theme.bg if theme.bg != theme.surface else "#f9fafb",
        white_space="nowrap", overflow="hidden",
    )  # fmt: skip
    value_box.text = value
    name_label = label(theme, name, vocab=FIELDS, font_size=theme.font_px - 1, font_weight="600")
    group = vbox(name_label, value_box, gap=4)
    group.noun, group.label, group.changes = "input", name, frozenset({"remove", "move"})
    return group


def image(theme: Theme, color: str, width: int | str, height: int, label_: str = "") -> Element:
    """A picture placeholder: a coloured panel with a pale disc on it."""
    disc = box(width=height // 2, height=height // 2, border_radius="50%", background="rgba(255,255,255,0.45)")
    element = hbox(
        disc, gap=0, justify_content="center", flex="none", width=width, height=height, border_radius=theme.radius
    )
    element.noun, element.label, element.color_role = "image", label_, "background"
    element.changes = frozenset({"recolor", "remove"})
    paint(element, color)
    return element


def panel(theme: Theme, *children: Element, gap: int | None = None, **style) -> Element:
    return vbox(
        *children, gap=theme.gap if gap is None else gap, background=theme.surface, border=f"1px solid {theme.border}",
        border_radius=theme.radius, **style,
    )  # fmt: skip


def header(theme: Theme, title: Element, *right: Element) -> Element:
    return hbox(title, *right, gap=theme.gap, flex="none")


def page_root(theme: Theme, *children: Element, gap: int | None = None) -> Element:
    return vbox(*children, gap=theme.gap if gap is None else gap, width=LAYOUT_PX, height=LAYOUT_PX, padding=theme.pad)


# --- content -----------------------------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, options):
    options = tuple(options)
    return options[int(rng.integers(len(options)))]


def _sample(rng: np.random.Generator, options, count: int) -> list:
    options = tuple(options)
    return [options[i] for i in rng.permutation(len(options))[:count]]


def _person(rng: np.random.Generator) -> str:
    return f"{_choice(rng, FIRST_NAMES)} {_choice(rng, LAST_NAMES)}"


def _words(rng: np.random.Generator, count: int) -> str:
    text = " ".join(_choice(rng, WORDS) for _ in range(count))
    return text[0].upper() + text[1:] + "."


def _number(rng: np.random.Generator) -> str:
    value = int(rng.integers(12, 98000))
    return _choice(rng, (f"{value:,}", f"${value:,}", f"{value % 100}%"))


def _time(rng: np.random.Generator) -> str:
    return _choice(rng, (f"{int(rng.integers(1, 59))}m", f"{int(rng.integers(1, 23))}h", f"{int(rng.integers(1, 6))}d"))


def _field_value(rng: np.random.Generator, name: str, person: str) -> str:
    first, last = person.lower().split()
    return {
        "Email": f"{first}.{last}@mail.com",
        "Password": "\u2022" * int(rng.integers(8, 13)),
        "Username": f"{first}_{last[0]}",
        "Full name": person,
        "Phone": f"555-{int(rng.integers(1000, 9999))}",
        "City": _choice(rng, CITIES),
        "Country": _choice(rng, ("Kenya", "Peru", "Japan", "Norway", "Ireland", "India")),
        "Language": _choice(rng, ("English", "Spanish", "French", "Hindi")),
        "Time zone": _choice(rng, ("UTC", "UTC+1", "UTC-5", "UTC+9")),
        "Company": _choice(rng, ("Acme", "Globex", "Initech", "Umbrella")),
        "Website": f"{last}.dev",
        "Nickname": first.capitalize(),
    }[name]


def _other(rng: np.random.Generator, options, taken) -> str:
    """An option not yet on the page, so that a new or moved element is told apart from its siblings."""
    free = [option for option in options if option not in taken] or list(options)
    return _choice(rng, free)


# --- template families -------------------------------------------------------------------------------------------


def login_page(rng: np.random.Generator, theme: Theme) -> Page:
    """A sign-in or sign-up form on a card placed left, centred or right."""
    width = int(rng.integers(250, 341))
    inner = width - 2 * theme.pad - 2
    left = {"left": theme.pad, "center": (LAYOUT_PX - width) // 2, "right": LAYOUT_PX - width - theme.pad}[
        _choice(rng, ("left", "center", "right"))
    ]
    sign_up = bool(rng.random() < 0.4)
    title_words = ("Create account", "Join us", "Sign up") if sign_up else ("Sign in", "Welcome back", "Log in")
    accent_title = _choice(rng, theme.colors("text")) if rng.random() < 0.3 else None
    title = heading(theme, _choice(rng, title_words), int(rng.integers(19, 25)), accent_title)
    person = _person(rng)
    names = ["Full name", "Email", "Password"] if sign_up else [_choice(rng, ("Email", "Username")), "Password"]
    fields = [text_field(theme, name, _field_value(rng, name, person), inner) for name in names]
    primary = button(theme, "Sign up" if sign_up else _choice(rng, ("Sign in", "Log in", "Continue")), theme.accent)
    buttons = hbox(primary, gap=theme.gap, justify_content=_choice(rng, ("flex-start", "flex-end")))
    if rng.random() < 0.5:
        buttons.children.append(button(theme, _choice(rng, ("Cancel", "Back", "Help"))))
    children = [title, *fields, buttons]
    if not sign_up:
        forgot = link(theme, "Forgot password", _choice(rng, theme.colors("text")))
        children.insert(-1, hbox(forgot, gap=0, justify_content=_choice(rng, ("flex-start", "flex-end"))))
    if rng.random() < 0.25:
        children.insert(1, random_banner(theme, rng))
    card = panel(theme, *children, width=width, padding=theme.pad, margin=f"{int(rng.integers(8, 60))}px 0 0 {left}px")
    root = box(card, width=LAYOUT_PX, height=LAYOUT_PX)
    taken = {primary.label} | {b.label for b in buttons.children}
    sites = [
        AddSite(card, 1, lambda r: random_banner(theme, r)),
        AddSite(buttons, -1, lambda r: button(theme, _other(r, BUTTONS, taken), _choice(r, theme.colors()))),
        AddSite(card, -1, lambda r: link(theme, _other(r, LINKS, ()), _choice(r, theme.colors("text")))),
    ]
    return Page("login", theme, root, sites)


def settings_page(rng: np.random.Generator, theme: Theme) -> Page:
    """A settings form: rows of a name and a control (an input, a switch or a badge), then Save and Cancel."""
    person = _person(rng)
    title = heading(theme, _choice(rng, ("Settings", "Account settings", "Preferences", "Profile")), 20)
    top = header(theme, title, avatar(theme, person, _choice(rng, theme.colors()), int(rng.integers(30, 41))))
    control_px = int(rng.integers(130, 171))

    def setting_row(r: np.random.Generator, name: str) -> Element:
        kind = _choice(r, ("input", "input", "switch", "badge"))
        if kind == "input":
            control = box(
                width=control_px, padding="4px 8px", border=f"1px solid {theme.border}", border_radius=theme.radius,
                white_space="nowrap", overflow="hidden",
            )  # fmt: skip
            control.text = _field_value(r, name, person)
            control.noun, control.label, control.changes = "input", name, frozenset({"remove"})
        elif kind == "switch":
            on = bool(r.random() < 0.6)
            knob = box(width=14, height=14, border_radius="50%", background="#ffffff", margin_left=16 if on else 2)
            control = hbox(
                knob, gap=0, width=34, height=18, border_radius=9, flex="none",
                background=PALETTE[theme.accent] if on else theme.border,
            )  # fmt: skip
        else:
            control = badge(theme, _choice(r, BADGES), _choice(r, theme.colors()))
        row = hbox(
            label(theme, name, vocab=FIELDS, width=int(rng.integers(110, 141))),
            box(flex="1"),
            control,
            gap=8, padding="9px 0", border_bottom=f"1px solid {theme.border}",
        )  # fmt: skip
        row.noun, row.label, row.changes = "row", name, frozenset({"remove", "move"})
        return row

    names = _sample(rng, FIELDS[2:], int(rng.integers(3, 6)))
    rows = [setting_row(rng, name) for name in names]
    settings = panel(theme, *rows, gap=0, padding=f"0 {theme.pad}px")
    buttons = hbox(
        button(theme, "Save", theme.accent),
        button(theme, _choice(rng, ("Cancel", "Reset"))),
        gap=theme.gap, justify_content=_choice(rng, ("flex-start", "flex-end")), flex="none",
    )  # fmt: skip
    root = page_root(theme, top, settings, buttons)
    if rng.random() < 0.25:
        root.children.insert(1, random_banner(theme, rng))
    sites = [
        AddSite(root, 1, lambda r: random_banner(theme, r)),
        AddSite(settings, int(rng.integers(0, len(rows) + 1)), lambda r: setting_row(r, _other(r, FIELDS[2:], names))),
        AddSite(buttons, -1, lambda r: button(theme, _other(r, BUTTONS, ("Save", "Cancel", "Reset")))),
    ]
    sites += [
        AddSite(row, 1, lambda r: badge(theme, _choice(r, BADGES), _choice(r, theme.colors())))
        for row in rows
        if row.children[-1].noun != "badge"
    ]
    return Page("settings", theme, root, sites)


def dashboard_page(rng: np.random.Generator, theme: Theme) -> Page:
    """Stat cards in a grid, some painted, each with a title, a number and a trend badge."""
    title = heading(theme, _choice(rng, ("Overview", "Dashboard", "Analytics")), 20)
    right = [avatar(theme, _person(rng), _choice(rng, theme.colors()), 32)]
    if rng.random() < 0.5:
        right.insert(0, button(theme, _choice(rng, ("Export", "Share", "Invite")), theme.accent))
    top = header(theme, title, *right)
    period = label(theme, _choice(rng, PERIODS), vocab=PERIODS, opacity="0.7", flex="none")
    columns = int(_choice(rng, (2, 3)))
    count = int(_choice(rng, (2, 4) if columns == 2 else (3, 6)))
    titles = _sample(rng, STAT_LABELS, count)

    def trend(r: np.random.Generator) -> Element:
        up = bool(r.random() < 0.6)
        return badge(theme, f"{'+' if up else '-'}{int(r.integers(1, 40))}%", "green" if up else "red", vocab=())

    def stat_card(r: np.random.Generator, name: str) -> Element:
        colored = bool(r.random() < 0.3)
        value = label(theme, _number(r), font_size=theme.font_px + 8, font_weight="700")
        parts = [label(theme, name, vocab=STAT_LABELS, opacity="0.8"), value]
        if not colored:
            parts.append(hbox(trend(r), gap=6))
        card = panel(theme, *parts, gap=6, padding=12, min_width=0)
        card.noun, card.label = "card", name
        card.changes = frozenset({"remove", "move"} | ({"recolor"} if colored else set()))
        if colored:
            card.color_role = "background"
            paint(card, _choice(r, theme.colors()))
        return card

    cards = [stat_card(rng, name) for name in titles]
    grid = box(*cards, display="grid", grid_template_columns=f"repeat({columns}, 1fr)", gap=theme.gap, flex="none")
    root = page_root(theme, top, period, grid)
    if rng.random() < 0.2:
        root.children.insert(1, random_banner(theme, rng))
    sites = [
        AddSite(root, 1, lambda r: random_banner(theme, r)),
        AddSite(grid, -1, lambda r: stat_card(r, _other(r, STAT_LABELS, titles))),
        AddSite(
            top, 1, lambda r: button(theme, _other(r, ("Export", "Share", "Invite"), ()), _choice(r, theme.colors()))
        ),
    ]
    sites += [AddSite(card, -1, lambda r: hbox(trend(r), gap=6)) for card in cards if len(card.children) == 2]
    return Page("dashboard", theme, root, sites)


def todo_page(rng: np.random.Generator, theme: Theme) -> Page:
    """A to-do list: rows of a check box, a task and sometimes a status badge."""
    title = heading(theme, _choice(rng, ("My tasks", "Today", "Groceries")), 20)
    top = header(theme, title, button(theme, _choice(rng, ("Add", "New", "Share")), theme.accent))
    tasks = _sample(rng, TASKS, int(rng.integers(4, 7)))

    def task_row(r: np.random.Generator, task: str) -> Element:
        done = bool(r.random() < 0.35)
        check = box(
            width=16, height=16, line_height=12, flex="none", text_align="center", font_size=11, color="#ffffff",
            border=f"2px solid {PALETTE[theme.accent] if done else theme.border}", border_radius=min(theme.radius, 4),
            background=PALETTE[theme.accent] if done else "transparent",
        )  # fmt: skip
        check.text = "\u2713" if done else ""
        text = label(theme, task, flex="1", min_width=0, text_decoration="line-through" if done else "none")
        text.noun, text.vocab, text.changes = "row", TASKS, frozenset({"text"})
        row = hbox(check, text, gap=10, padding="8px 12px", border_bottom=f"1px solid {theme.border}")
        if r.random() < 0.5:
            row.children.append(badge(theme, _choice(r, BADGES), _choice(r, theme.colors())))
        row.noun, row.label, row.changes = "row", task, frozenset({"remove", "move"})
        return row

    rows = [task_row(rng, task) for task in tasks]
    items = panel(theme, *rows, gap=0, flex="none")
    root = page_root(theme, top, items)
    if rng.random() < 0.3:
        count = sum(row.children[0].text != "" for row in rows)
        root.children.insert(1, label(theme, f"{count} of {len(rows)} done", opacity="0.7", flex="none"))
    sites = [
        AddSite(root, 1, lambda r: random_banner(theme, r)),
        AddSite(items, int(rng.integers(0, len(rows) + 1)), lambda r: task_row(r, _other(r, TASKS, tasks))),
    ]
    sites += [
        AddSite(row, -1, lambda r: badge(theme, _choice(r, BADGES), _choice(r, theme.colors())))
        for row in rows
        if len(row.children) == 2
    ]
    return Page("todo", theme, root, sites)


def inbox_page(rng: np.random.Generator, theme: Theme) -> Page:
    """A message list: avatar, sender, a preview line, the time and an unread count."""
    title = heading(theme, _choice(rng, ("Inbox", "Messages", "Chats")), 20)
    top = header(theme, title, button(theme, _choice(rng, ("Compose", "New", "Edit")), theme.accent))
    avatar_px = int(rng.integers(30, 41))

    def message_row(r: np.random.Generator, person: str) -> Element:
        sender = label(theme, person, font_weight="700")
        preview = label(theme, _words(r, 8), opacity="0.7", text_overflow="ellipsis")
        side = [label(theme, _time(r), opacity="0.7", font_size=theme.font_px - 2)]
        if r.random() < 0.5:
            side.append(badge(theme, str(int(r.integers(1, 13))), _choice(r, theme.colors()), vocab=()))
        row = hbox(
            avatar(theme, person, _choice(r, theme.colors()), avatar_px),
            vbox(sender, preview, gap=2, flex="1", min_width=0),
            vbox(*side, gap=4, width=40, flex="none", align_items="flex-end"),
            gap=10, padding="8px 10px", border_bottom=f"1px solid {theme.border}",
        )  # fmt: skip
        row.noun, row.label, row.changes = "row", person, frozenset({"remove", "move"})
        return row

    people = list(dict.fromkeys(_person(rng) for _ in range(int(rng.integers(3, 6)))))
    rows = [message_row(rng, person) for person in people]
    messages = panel(theme, *rows, gap=0, flex="none")
    root = page_root(theme, top, messages)
    if rng.random() < 0.2:
        root.children.insert(1, random_banner(theme, rng))
    sites = [
        AddSite(root, 1, lambda r: random_banner(theme, r)),
        AddSite(messages, 0, lambda r: message_row(r, _other(r, [_person(r) for _ in range(3)], people))),
    ]
    sites += [
        AddSite(row.children[2], -1, lambda r: badge(theme, str(int(r.integers(1, 13))), "red", vocab=()))
        for row in rows
        if len(row.children[2].children) == 1
    ]
    return Page("inbox", theme, root, sites)


def board_page(rng: np.random.Generator, theme: Theme) -> Page:
    """A task board: three columns of cards (some with a cover picture or a badge); cards move between columns."""
    title = heading(theme, _choice(rng, ("Team board", "Sprint plan", "Projects")), 20)
    right = [avatar(theme, _person(rng), _choice(rng, theme.colors()), 28) for _ in range(int(rng.integers(0, 3)))]
    top = header(theme, title, *right)
    tasks = _sample(rng, BOARD_TASKS, 9)

    def task_card(r: np.random.Generator, task: str) -> Element:
        name = label(theme, task, font_size=12, font_weight="600")
        name.noun, name.vocab, name.changes = "card", BOARD_TASKS, frozenset({"text"})
        parts = [name]
        if r.random() < 0.3:
            parts.insert(0, image(theme, _choice(r, theme.colors()), "100%", int(r.integers(20, 34))))
        if r.random() < 0.4:
            parts.append(hbox(badge(theme, _choice(r, BADGES), _choice(r, theme.colors())), gap=4))
        card = panel(theme, *parts, gap=6, padding=6, flex="none")
        card.noun, card.label, card.changes = "card", task, frozenset({"remove", "move"})
        return card

    columns, cards = [], []
    for name in _sample(rng, COLUMNS, 3):
        column_cards = [task_card(rng, tasks.pop()) for _ in range(int(rng.integers(1, 4)))]
        cards += column_cards
        column_title = heading(theme, name, 13, vocab=COLUMNS)
        column_title.style["flex"] = "none"
        column = vbox(
            column_title, *column_cards, gap=8, padding=6, flex="1", min_width=0, border_radius=theme.radius,
            background="rgba(255,255,255,0.06)" if theme.dark else "rgba(0,0,0,0.05)",
        )  # fmt: skip
        column.move_group = "columns"
        columns.append(column)
    board = hbox(*columns, gap=theme.gap, align="flex-start", flex="none")
    root = page_root(theme, top, board)
    if rng.random() < 0.2:
        root.children.insert(1, random_banner(theme, rng))
    sites = [AddSite(root, 1, lambda r: random_banner(theme, r))]
    sites += [AddSite(column, -1, lambda r: task_card(r, _choice(r, tasks))) for column in columns]
    sites += [
        AddSite(card, -1, lambda r: hbox(badge(theme, _choice(r, BADGES), _choice(r, theme.colors())), gap=4))
        for card in cards
        if card.children[-1].noun != "badge" and not card.children[-1].children
    ]
    return Page("board", theme, root, sites)


def article_page(rng: np.random.Generator, theme: Theme) -> Page:
    """An article: a headline, a byline with an avatar, maybe a picture, tags, text and actions."""
    accent_title = _choice(rng, theme.colors("text")) if rng.random() < 0.3 else None
    title = heading(theme, _choice(rng, ARTICLE_TITLES), int(rng.integers(19, 24)), accent_title, ARTICLE_TITLES)
    title.style["flex"] = "none"
    author = _person(rng)
    byline_parts = [
        avatar(theme, author, _choice(rng, theme.colors()), int(rng.integers(28, 37))),
        vbox(
            label(theme, author, font_weight="600"),
            label(theme, f"{_choice(rng, ('May', 'June', 'March'))} {int(rng.integers(1, 29))}", opacity="0.7"),
            gap=0,
            flex="1",
            min_width=0,
        ),
    ]
    if rng.random() < 0.5:
        byline_parts.append(button(theme, "Follow", _choice(rng, theme.colors()), height=theme.font_px + 14))
    byline = hbox(*byline_parts, gap=10, flex="none")
    tags = hbox(*(badge(theme, tag, _choice(rng, theme.colors()), TAGS) for tag in _sample(rng, TAGS, 2)), gap=6)
    tags.style["flex"] = "none"
    paragraph = label(theme, _words(rng, int(rng.integers(14, 26))), line_height="1.45", flex="none")
    paragraph.style["white-space"] = "normal"
    actions = hbox(
        button(theme, _choice(rng, ("Like", "Save", "Subscribe")), theme.accent),
        button(theme, "Share"),
        box(flex="1"),
        link(theme, _choice(rng, ("Read more", "Details")), _choice(rng, theme.colors("text"))),
        gap=theme.gap, flex="none",
    )  # fmt: skip
    children = [title, byline, tags, paragraph, actions]
    if rng.random() < 0.5:
        children.insert(2, image(theme, _choice(rng, theme.colors()), "100%", int(rng.integers(60, 100))))
    root = page_root(theme, *children)
    taken = {tag.label for tag in tags.children}
    sites = [
        AddSite(root, 0, lambda r: random_banner(theme, r)),
        AddSite(tags, -1, lambda r: badge(theme, _other(r, TAGS, taken), _choice(r, theme.colors()), TAGS)),
        AddSite(actions, 2, lambda r: button(theme, _other(r, ("Like", "Save", "Print", "Reply"), ()))),
    ]
    return Page("article", theme, root, sites)


def shop_page(rng: np.random.Generator, theme: Theme) -> Page:
    """A grid of product cards: a picture, a name, a price, a buy button and sometimes a sale badge."""
    title = heading(theme, _choice(rng, ("Shop", "New arrivals", "Best sellers")), 20)
    top = header(theme, title, button(theme, f"Cart ({int(rng.integers(0, 9))})", theme.accent))
    columns = int(_choice(rng, (2, 3)))
    count = int(_choice(rng, (2, 4) if columns == 2 else (3, 6)))
    picture_px = int(rng.integers(50, 76)) if count > columns else int(rng.integers(70, 121))
    products = _sample(rng, PRODUCTS, count)
    buy = _choice(rng, ("Buy", "Add", "Buy now"))

    def product_card(r: np.random.Generator, product: str) -> Element:
        name = label(theme, product, font_weight="600")
        price = label(theme, f"${int(r.integers(5, 300))}", opacity="0.75")
        line = hbox(price, gap=6)
        if r.random() < 0.3:
            line.children.append(badge(theme, _choice(r, ("Sale", "New", "Hot")), _choice(r, theme.colors())))
        parts = [image(theme, _choice(r, theme.colors()), "100%", picture_px, product.lower()), name, line]
        parts.append(button(theme, buy, theme.accent, height=theme.font_px + 14))
        card = panel(theme, *parts, gap=6, padding=8, min_width=0)
        card.noun, card.label, card.changes = "card", product, frozenset({"remove", "move"})
        return card

    cards = [product_card(rng, product) for product in products]
    grid = box(*cards, display="grid", grid_template_columns=f"repeat({columns}, 1fr)", gap=theme.gap, flex="none")
    root = page_root(theme, top, grid)
    if rng.random() < 0.2:
        root.children.insert(1, random_banner(theme, rng))
    sites = [
        AddSite(root, 1, lambda r: random_banner(theme, r)),
        AddSite(grid, -1, lambda r: product_card(r, _other(r, PRODUCTS, products))),
    ]
    sites += [
        AddSite(card.children[2], -1, lambda r: badge(theme, _choice(r, ("Sale", "New", "Hot")), "red"))
        for card in cards
        if len(card.children[2].children) == 1
    ]
    return Page("shop", theme, root, sites)


def comments_page(rng: np.random.Generator, theme: Theme) -> Page:
    """A comment thread: avatars (not everyone has one), names with role badges, text and action links."""
    comments_count = int(rng.integers(2, 5))
    title = heading(theme, _choice(rng, ("Comments", "Discussion", "Replies")), 19)
    top = header(theme, title, badge(theme, str(comments_count + int(rng.integers(0, 20))), theme.accent, vocab=()))
    avatar_px = int(rng.integers(28, 37))
    link_color = _choice(rng, theme.colors("text"))

    def comment(r: np.random.Generator, person: str) -> Element:
        name_line = hbox(label(theme, person, font_weight="700"), gap=6)
        if r.random() < 0.3:
            name_line.children.append(
                badge(theme, _choice(r, ("Author", "Mod", "New", "Top")), _choice(r, theme.colors()))
            )
        name_line.children.append(label(theme, _time(r), opacity="0.6", font_size=theme.font_px - 2))
        text = label(theme, _words(r, int(r.integers(6, 16))), line_height="1.4")
        text.style["white-space"] = "normal"
        actions = hbox(*(link(theme, word, link_color, COMMENT_LINKS) for word in _sample(r, COMMENT_LINKS, 2)), gap=12)
        body = vbox(name_line, text, actions, gap=4, flex="1", min_width=0)
        row = hbox(body, gap=10, align="flex-start", padding="8px 0", border_bottom=f"1px solid {theme.border}")
        if r.random() < 0.8:
            row.children.insert(0, avatar(theme, person, _choice(r, theme.colors()), avatar_px))
        row.noun, row.label, row.changes = "row", person, frozenset({"remove", "move"})
        return row

    people = list(dict.fromkeys(_person(rng) for _ in range(comments_count)))
    rows = [comment(rng, person) for person in people]
    thread = vbox(*rows, gap=0, flex="none")
    root = page_root(theme, top, thread)
    sites = [
        AddSite(root, 1, lambda r: random_banner(theme, r)),
        AddSite(thread, -1, lambda r: comment(r, _other(r, [_person(r) for _ in range(3)], people))),
    ]
    for row in rows:
        body = row.children[-1]
        if len(row.children) == 1:
            sites.append(
                AddSite(row, 0, lambda r, who=row.label: avatar(theme, who, _choice(r, theme.colors()), avatar_px))
            )
        if len(body.children[0].children) == 2:
            sites.append(AddSite(body.children[0], 1, lambda r: badge(theme, _choice(r, ("Author", "Mod")), "blue")))
        if len(body.children[2].children) == 2:
            sites.append(AddSite(body.children[2], -1, lambda r: link(theme, _choice(r, COMMENT_LINKS), link_color)))
    return Page("comments", theme, root, sites)


TEMPLATES: dict[str, Callable[[np.random.Generator, Theme], Page]] = {
    "login": login_page,
    "settings": settings_page,
    "dashboard": dashboard_page,
    "todo": todo_page,
    "inbox": inbox_page,
    "board": board_page,
    "article": article_page,
    "shop": shop_page,
    "comments": comments_page,
}
TEMPLATE_SPLITS = {
    "train": ("login", "settings", "dashboard", "todo", "inbox", "board"),
    "validation": ("article",),
    "test": ("shop", "comments"),
}


def random_page(rng: np.random.Generator, family: str) -> Page:
    if family not in TEMPLATES:
        raise ValueError(f"Unknown page template {family!r}; expected one of {tuple(TEMPLATES)}")
    return TEMPLATES[family](rng, random_theme(rng))


# --- rendering ---------------------------------------------------------------------------------------------------

_MEASURE = """ids => {
    const found = {};
    for (const element of document.querySelectorAll('[data-el]')) {
        const id = element.dataset.el;
        if (ids !== null && !ids.includes(id)) continue;
        const r = element.getBoundingClientRect();
        found[id] = [r.left, r.top, r.right, r.bottom, element.scrollWidth > element.clientWidth + 1];
    }
    return found;
}"""


class ScreenshotRenderer:
    """One headless Chromium page reused for many screenshots; a context manager.

    Pages are laid out in a fixed 448x448 CSS px viewport; `size` is the screenshot's side in pixels (the device
    scale is size / 448), and boxes are in the screenshot's pixels.
    """

    def __init__(self, size: int = LAYOUT_PX, executable: str = CHROMIUM):
        self.size = size
        self.executable = executable
        self._playwright = self._browser = self._page = None

    def __enter__(self) -> "ScreenshotRenderer":
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as error:
            raise ImportError(
                'Rendering screenshots needs Playwright\'s client library: pip install "onediff-idc[browser-tests]"'
            ) from error
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable, headless=True, args=list(CHROMIUM_ARGS)
            )
            self._page = self._browser.new_page(
                viewport={"width": LAYOUT_PX, "height": LAYOUT_PX}, device_scale_factor=self.size / LAYOUT_PX
            )
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()
        self._playwright = self._browser = self._page = None

    def _require_page(self):
        if self._page is None:
            raise RuntimeError("The renderer is not open; use it as `with ScreenshotRenderer() as renderer:`")
        return self._page

    def render(self, page_html: str) -> Image.Image:
        """The viewport's screenshot (RGB, size x size) of `page_html`, which stays loaded for `boxes`."""
        page = self._require_page()
        page.set_content(page_html, wait_until="load")
        png = page.screenshot(type="png", animations="disabled", caret="hide")
        return Image.open(io.BytesIO(png)).convert("RGB")

    def measure(self, ids: list[str] | None = None) -> dict[str, tuple[list[float], bool]]:
        """Per data-el id of the loaded page (all with None): its box in pixels and whether its text overflows."""
        scale = self.size / LAYOUT_PX
        found = self._require_page().evaluate(_MEASURE, ids)
        return {key: ([v * scale for v in value[:4]], bool(value[4])) for key, value in found.items()}

    def boxes(self, ids: list[str] | None = None) -> dict[str, list[float]]:
        """`[x0, y0, x1, y1]` in pixels of each data-el id on the loaded page (all with None); absent ids are left
        out."""
        return {key: box_ for key, (box_, _) in self.measure(ids).items()}


# --- pairs -------------------------------------------------------------------------------------------------------


def grid_position(box_: list[float], size: int) -> str:
    """Where a box's centre lies on a 3x3 grid of a size x size image."""
    x = (box_[0] + box_[2]) / 2
    y = (box_[1] + box_[3]) / 2
    column, row = (min(max(int(3 * v / size), 0), 2) for v in (x, y))
    return GRID[row][column]


def pixel_region(box_: list[float], size: int) -> list[int]:
    """The pixels `[x0, y0, x1, y1]` (ends exclusive) a box touches, inside the image."""
    x0, y0 = (max(math.floor(v), 0) for v in box_[:2])
    x1, y1 = (min(math.ceil(v), size) for v in box_[2:])
    return [x0, y0, x1, y1]


def _on_screen(box_: list[float] | None, size: int) -> bool:
    """Whether a box is wholly inside the screenshot and not empty: a caption may then speak of the element."""
    if box_ is None:
        return False
    x0, y0, x1, y1 = box_
    return x1 - x0 >= 2 and y1 - y0 >= 2 and x0 >= -0.5 and y0 >= -0.5 and x1 <= size + 0.5 and y1 <= size + 0.5


def _differs(before: Image.Image, after: Image.Image) -> np.ndarray:
    return (np.asarray(before) != np.asarray(after)).any(axis=-1)


def _visible(changed: np.ndarray, region: list[int], only_inside: bool) -> bool:
    """Whether enough pixels changed inside the region and, with `only_inside`, none beyond its dilated edge."""
    x0, y0, x1, y1 = region
    if changed[y0:y1, x0:x1].sum() < MIN_CHANGED_PIXELS:
        return False
    if not only_inside:
        return True
    outside = changed.copy()
    outside[max(y0 - DILATION_PX, 0) : y1 + DILATION_PX, max(x0 - DILATION_PX, 0) : x1 + DILATION_PX] = False
    return not outside.any()


def _move_destinations(root: Element, element: Element, parent: Element) -> list[tuple[str, int]]:
    """(container id, index) where `element` may go: the place of a sibling of its kind, or the end of another
    container of its parent's move group."""
    destinations = [
        (parent.el, i) for i, c in enumerate(parent.children) if c is not element and c.noun == element.noun
    ]
    if parent.move_group:
        for other in root.walk():
            if other is not parent and other.move_group == parent.move_group:
                same = [i for i, c in enumerate(other.children) if c.noun == element.noun]
                destinations += [(other.el, i) for i in same] + [(other.el, len(other.children))]
    return destinations


def _targets(page: Page, change_type: str, before_measures: dict, size: int) -> list:
    if change_type == "add":
        return list(page.add_sites)
    targets = []
    for element in page.root.walk():
        measured = before_measures.get(element.el)
        if change_type not in element.changes or measured is None or not _on_screen(measured[0], size):
            continue
        if change_type == "text" and measured[1]:
            continue  # its words are already cut off: a caption quoting them would not match the picture
        if change_type == "move" and not _move_destinations(page.root, element, find(page.root, element.el)[1]):
            continue
        targets.append(element)
    return targets


def _edit(page: Page, change_type: str, target, rng: np.random.Generator) -> tuple[Element, Element, dict] | None:
    """A changed copy of the page's tree, the changed element in it and the change's facts so far; None when the
    element has no other words of about its length."""
    root = copy.deepcopy(page.root)
    if change_type == "add":
        parent, _ = find(root, target.parent.el)
        added = target.make(rng)
        number(added, "new")
        parent.children.insert(target.index if target.index >= 0 else len(parent.children), added)
        return root, next(e for e in added.walk() if e.noun), {}  # a badge may come in a wrapper that aligns it
    element, parent = find(root, target.el)
    facts: dict = {}
    if change_type == "recolor":
        options = [c for c in page.theme.colors(element.color_role) if c != element.color]
        facts = {"from_color": element.color}
        paint(element, _choice(rng, options))
        facts["color"] = element.color
    elif change_type == "text":
        longest = max(len(element.text) + 3, 6)  # words of about the same length, so they fit the element's box
        options = [w for w in element.vocab if w != element.text and len(w) <= longest]
        if not options:
            return None
        facts = {"old_text": element.text, "new_text": _choice(rng, options)}
        element.text = element.label = facts["new_text"]
    elif change_type == "remove":
        parent.children.remove(element)
    elif change_type == "move":
        container_el, index = _choice(rng, _move_destinations(root, element, parent))
        container, _ = find(root, container_el)
        parent.children.remove(element)
        container.children.insert(min(index, len(container.children)), element)
    else:
        raise ValueError(f"Unknown screenshot change type {change_type!r}; expected one of {CHANGE_TYPES}")
    return root, element, facts


def _direction(before: list[float], after: list[float]) -> str:
    dx = (after[0] + after[2] - before[0] - before[2]) / 2
    dy = (after[1] + after[3] - before[1] - before[3]) / 2
    if abs(dy) >= abs(dx):
        return "down" if dy > 0 else "up"
    return "right" if dx > 0 else "left"


def _try_change(page, change_type, target, rng, renderer, before, before_measures) -> dict | None:
    """One attempt at a visible change of `target`; None when the change cannot be seen or said."""
    size = renderer.size
    edited = _edit(page, change_type, target, rng)
    if edited is None:
        return None
    root, element, facts = edited
    if change_type == "remove":  # nothing new to render for its box: it is where the element was
        after = renderer.render(page.html(root))
        old_box = before_measures[element.el][0]
        region = pixel_region(old_box, size)
        position = grid_position(old_box, size)
        if not _visible(_differs(before, after), region, only_inside=False):
            return None
    else:
        after = renderer.render(page.html(root))
        measured = renderer.measure([element.el]).get(element.el)
        if measured is None or not _on_screen(measured[0], size):
            return None
        new_box, overflows = measured
        if change_type == "text" and overflows:
            return None  # the new words do not fit: what shows is not what the caption quotes
        position = grid_position(new_box, size)
        region = pixel_region(new_box, size)
        if change_type == "move":
            old_box = before_measures[element.el][0]
            if max(abs(a - b) for a, b in zip(old_box, new_box)) < 4 * size / LAYOUT_PX:
                return None
            facts = {"to": position, "direction": _direction(old_box, new_box)}
            position = grid_position(old_box, size)
            region = pixel_region([min(old_box[0], new_box[0]), min(old_box[1], new_box[1]),
                                   max(old_box[2], new_box[2]), max(old_box[3], new_box[3])], size)  # fmt: skip
        if not _visible(_differs(before, after), region, only_inside=change_type in ("recolor", "text")):
            return None
    change = {"type": f"screen_{change_type}", "element": element.noun}
    if element.label and change_type != "text":
        change["label"] = element.label
    if element.kind:
        change["kind"] = element.kind
    if element.color and change_type in ("add", "remove"):
        change["color"] = element.color
    change.update(facts)
    change["position"] = position
    if change_type == "move":  # "to" after "position", as a reader expects
        change["to"] = change.pop("to")
    return {"images": [before, after], "change": change, "regions": [region]}


def screenshot_pair(
    rng: np.random.Generator,
    change_type: str,
    split: str,
    renderer: ScreenshotRenderer,
    size: int = LAYOUT_PX,
    num_references: int = 3,
) -> dict:
    """One before/after screenshot pair of a page of `split`'s template families (TEMPLATE_SPLITS) with one change
    of CHANGE_TYPES: {"images", "change", "regions", "references", "template"} as `photo_edit_pair` returns them."""
    if change_type not in CHANGE_TYPES:
        raise ValueError(f"Unknown screenshot change type {change_type!r}; expected one of {CHANGE_TYPES}")
    if split not in TEMPLATE_SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {tuple(TEMPLATE_SPLITS)}")
    if renderer.size != size:
        raise ValueError(
            f"The renderer makes {renderer.size} px screenshots, not {size}; open ScreenshotRenderer({size})"
        )
    for _ in range(PAGES_PER_PAIR):
        family = _choice(rng, TEMPLATE_SPLITS[split])
        page = random_page(rng, family)
        before_html = page.html()
        before = renderer.render(before_html)
        if change_type == "none":
            after = renderer.render(before_html)  # a second render: what the model sees for an unchanged page
            if _differs(before, after).any():
                raise RuntimeError("Chromium rendered one page differently twice, so unchanged pairs would differ")
            pair = {"images": [before, after], "change": {"type": "none"}, "regions": []}
        else:
            before_measures = renderer.measure()
            targets = _targets(page, change_type, before_measures, size)
            pair = None
            for index in rng.permutation(len(targets))[:TARGETS_PER_PAGE]:
                pair = _try_change(page, change_type, targets[index], rng, renderer, before, before_measures)
                if pair is not None:
                    break
            if pair is None:
                continue
        pair["references"] = screen_references(pair["change"], rng, num_references)
        pair["template"] = family
        return pair
    raise RuntimeError(f"No visible {change_type!r} change found on {PAGES_PER_PAIR} pages of the {split!r} templates")


# --- references --------------------------------------------------------------------------------------------------

PREFIX_NOUNS = ("button", "badge", "card", "link", "input")  # "the Save button"; other nouns quote: 'the row "..."'
SAYING_NOUNS = ("banner", "button", "badge", "link", "label", "heading", "row", "card")  # nouns that show words
CAPTIONS = {
    "screen_recolor": (
        "the {name} turned {color}",
        "the {name} changed from {from_color} to {color}",
        "the {noun} {at} changed from {from_color} to {color}",
        "the {from_color} {noun} is now {color}",
        "the color of the {name} changed to {color}",
        "the {noun} {at} is {color} now instead of {from_color}",
        "someone made the {name} {color}",
    ),
    "screen_text": (
        'the {name} now says "{new_text}"',
        'the {noun} text changed from "{old_text}" to "{new_text}"',
        'the {noun} {at} now reads "{new_text}" instead of "{old_text}"',
        'the {noun} that said "{old_text}" now says "{new_text}"',
        'the text of the {noun} {at} was replaced with "{new_text}"',
        'the {name} was renamed to "{new_text}"',
    ),
    "screen_add": (
        "{a_name} appeared {at}",
        "a new {noun} was added {at}",
        "someone added {a_name}",
        "there is now {a_name} {at}",
        '{a_noun} saying "{saying}" appeared',
        "{a_color_noun} was added {at}",
    ),
    "screen_remove": (
        "the {name} was removed",
        "the {name} disappeared",
        "the {noun} {at} is gone",
        "there is no longer {a_name}",
        "someone deleted the {name}",
        "the {color} {noun} {at} was removed",
    ),
    "screen_move": (
        "the {name} moved {direction}",
        "the {name} was moved from {where} to {to_where}",
        "the {name} moved to {to_where}",
        "someone moved the {name} {direction}",
        "the {noun} {at} changed its position",
        "the {name} is in a different place now",
    ),
    "none": (  # phrasing's no-change captions, less the scene
        "no change was made",
        "nothing has changed",
        "there is no difference",
        "the two images are the same",
        "the page is unchanged",
        "the two screenshots are identical",
    ),
}
_FORMATTER = string.Formatter()


def _article(phrase: str) -> str:
    return f"{'an' if phrase[0].lower() in 'aeiou' else 'a'} {phrase}"


def element_name(change: dict) -> str:
    """How a caption names the changed element, without an article: "Save button", "error banner", 'row "Pay
    rent"', "avatar of Maya Chen"."""
    noun = change["element"]
    label_ = change.get("label") or change.get("old_text") or ""
    if change.get("kind"):
        return f"{change['kind']} {noun}"
    if not label_:
        return noun
    if noun == "avatar":
        return f"{noun} of {label_}"
    if noun == "image":
        return f"{noun} of the {label_}"
    if noun in PREFIX_NOUNS and label_[0].isalpha() and len(label_.split()) <= 2:
        return f"{label_} {noun}"
    return f'{noun} "{label_}"'


def _place(position: str) -> str:
    return "the middle" if position == "center" else f"the {position}"


def _at(position: str) -> str:
    if position in ("top", "bottom"):
        return f"at the {position}"
    if position in ("left", "right"):
        return f"on the {position}"
    return f"in {_place(position)}"


def screen_references(change: dict, rng: np.random.Generator, count: int) -> list[str]:
    """`count` captions of a screenshot change, each from a different template while templates last."""
    if change["type"] == "none":
        order = rng.permutation(len(CAPTIONS["none"]))
        return [CAPTIONS["none"][order[i % len(order)]] for i in range(count)]
    noun = change["element"]
    slots = {
        "noun": noun,
        "name": element_name(change),
        "a_name": _article(element_name(change)),
        "a_noun": _article(noun),
        "at": _at(change["position"]),
        "where": _place(change["position"]),
        "color": change.get("color", ""),
        "from_color": change.get("from_color", ""),
        "a_color_noun": _article(f"{change['color']} {noun}") if change.get("color") else "",
        "old_text": change.get("old_text", ""),
        "new_text": change.get("new_text", ""),
        "saying": change.get("label", "") if noun in SAYING_NOUNS else "",
        "direction": change.get("direction", ""),
        "to_where": _place(change["to"]) if change.get("to", change["position"]) != change["position"] else "",
    }
    templates = [
        t for t in CAPTIONS[change["type"]] if all(slots[name] for _, name, _, _ in _FORMATTER.parse(t) if name)
    ]
    order = rng.permutation(len(templates))
    return [templates[order[i % len(templates)]].format(**slots) for i in range(count)]
