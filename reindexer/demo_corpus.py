"""The demo's data: a small, fictional help centre and its search queries.

Everything here is written by the project and generated deterministically from a
seed; nothing is downloaded. The fictional product is *Larkspur*, a team workspace
(pages, files, chat). Its help-centre and runbook articles describe each part of
the product in plain words ("the billing service", "the desktop sync app"), while
the staff who search them speak in-house jargon: internal code names (Falcon,
Otter, Heron...), error codes (``FLC-227``) and a few slang verbs ("bounce" for
restart, "rota" for on-call).

That gap is what the demo's fine-tune closes. A general-purpose model such as
all-MiniLM-L6-v2 matches the intent of a query ("restart", "logs") but cannot
know which of the fifteen services "Heron" is, nor what ``KST-231`` means, so it
is imperfect but not hopeless. The training pairs teach the jargon on some
articles; the evaluation queries use the same jargon on *other* articles, so a gain
on them is generalisation, not memorisation:

* every evaluation query's grade-2 (exact) article is never a training positive;
* no evaluation query text is also a training query;
* every code name and every error number appears in training, on other articles.

Layout of the corpus: 15 services x (16 runbook topics + 8 error articles +
4 objects x 4 how-to tasks) = 600 articles of 1-3 sentences.
"""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

__all__ = ["DEMO_FINETUNE", "DemoCorpus", "build_demo_corpus", "write_demo_files", "SERVICES"]


# Settings of reindexer.finetune.finetune() for the demo's 300 pairs: about 20 steps,
# 15-25 s on two CPU cores, nDCG@10 on the held-out queries from about 0.39 to 0.70.
class FinetuneSettings(TypedDict):
    epochs: int
    batch_size: int
    learning_rate: float


DEMO_FINETUNE: FinetuneSettings = {"epochs": 2, "batch_size": 32, "learning_rate": 2e-4}


# --------------------------------------------------------------------------- services


@dataclass(frozen=True)
class _Service:
    code: str  # internal code name, used only in queries
    prefix: str  # error-code prefix, used only in queries
    slug: str
    name: str  # plain name used in articles: "the billing service"
    short: str  # "billing"
    does: str
    team: str
    upstream: str  # what it depends on, in plain words
    unit: str  # what it processes, plural
    data: str  # what it stores, for the retention article
    area: str  # where its settings live in the product
    objects: tuple[tuple[str, str], ...]  # (singular, plural), four of them


SERVICES: tuple[_Service, ...] = (
    _Service(
        "Falcon",
        "FLC",
        "billing",
        "the billing service",
        "billing",
        "charges customers every month, issues invoices and handles refunds",
        "Payments",
        "the card processor",
        "payments",
        "invoices and payment records",
        "Settings > Billing",
        (
            ("invoice", "invoices"),
            ("refund", "refunds"),
            ("payment card", "payment cards"),
            ("subscription plan", "subscription plans"),
        ),
    ),
    _Service(
        "Otter",
        "OTR",
        "desktop-sync",
        "the desktop sync app",
        "desktop sync",
        "keeps the files on a computer in step with the files in the workspace",
        "Clients",
        "the file storage backend",
        "file uploads",
        "sync history",
        "the sync app's Preferences window",
        (
            ("synced folder", "synced folders"),
            ("sync conflict", "sync conflicts"),
            ("upload queue", "upload queues"),
            ("selective sync rule", "selective sync rules"),
        ),
    ),
    _Service(
        "Heron",
        "HRN",
        "notifications",
        "the notification service",
        "notifications",
        "sends push, email digest and in-app notifications when something changes",
        "Messaging",
        "the mobile push providers",
        "notifications",
        "notification history",
        "Settings > Notifications",
        (
            ("notification rule", "notification rules"),
            ("daily digest", "daily digests"),
            ("registered device", "registered devices"),
            ("quiet hours schedule", "quiet hours schedules"),
        ),
    ),
    _Service(
        "Kestrel",
        "KST",
        "sign-in",
        "the sign-in service",
        "sign-in",
        "checks passwords, runs single sign-on and asks for two-step verification",
        "Identity",
        "the customer's identity provider",
        "sign-in attempts",
        "sign-in records",
        "Admin > Security",
        (
            ("SAML connection", "SAML connections"),
            ("login session", "login sessions"),
            ("two-step verification device", "two-step verification devices"),
            ("password reset link", "password reset links"),
        ),
    ),
    _Service(
        "Marten",
        "MRT",
        "search",
        "the search service",
        "search",
        "indexes every page, file and message so that people can find them",
        "Discovery",
        "the indexing queue",
        "search requests",
        "search index data",
        "Admin > Search",
        (
            ("search index", "search indexes"),
            ("saved search", "saved searches"),
            ("synonym list", "synonym lists"),
            ("excluded folder", "excluded folders"),
        ),
    ),
    _Service(
        "Puffin",
        "PFN",
        "reporting",
        "the reporting service",
        "reporting",
        "builds usage reports and charts for workspace admins",
        "Insights",
        "the data warehouse",
        "report runs",
        "report results",
        "Admin > Reports",
        (
            ("usage report", "usage reports"),
            ("scheduled export", "scheduled exports"),
            ("chart", "charts"),
            ("report filter", "report filters"),
        ),
    ),
    _Service(
        "Badger",
        "BDG",
        "backups",
        "the backup service",
        "backups",
        "takes a nightly copy of every workspace and restores it on request",
        "Storage",
        "the offsite archive",
        "backup jobs",
        "backup copies",
        "Admin > Backups",
        (
            ("snapshot", "snapshots"),
            ("restore request", "restore requests"),
            ("backup schedule", "backup schedules"),
            ("legal hold", "legal holds"),
        ),
    ),
    _Service(
        "Lynx",
        "LNX",
        "public-api",
        "the public API",
        "API",
        "lets customers and partners read and change workspace data over HTTPS",
        "Platform",
        "the internal services behind it",
        "API calls",
        "API request logs",
        "Settings > Developer",
        (
            ("API key", "API keys"),
            ("webhook", "webhooks"),
            ("OAuth app", "OAuth apps"),
            ("IP allow list", "IP allow lists"),
        ),
    ),
    _Service(
        "Wren",
        "WRN",
        "mobile",
        "the mobile apps",
        "mobile",
        "bring the workspace to iPhone and Android phones, with offline reading",
        "Mobile",
        "the public API",
        "app sessions",
        "crash reports",
        "the app's Settings screen",
        (
            ("offline download", "offline downloads"),
            ("app update", "app updates"),
            ("camera upload", "camera uploads"),
            ("home screen widget", "home screen widgets"),
        ),
    ),
    _Service(
        "Osprey",
        "OSP",
        "import",
        "the import tool",
        "import",
        "brings in spreadsheets, CSV files and data from other tools",
        "Onboarding",
        "the background job scheduler",
        "import jobs",
        "uploaded import files",
        "Settings > Import",
        (
            ("column mapping", "column mappings"),
            ("CSV upload", "CSV uploads"),
            ("duplicate row", "duplicate rows"),
            ("import preset", "import presets"),
        ),
    ),
    _Service(
        "Magpie",
        "MGP",
        "email",
        "the email delivery service",
        "email delivery",
        "sends invitations, password emails and other automatic messages",
        "Messaging",
        "the outbound mail relay",
        "emails",
        "delivery logs",
        "Admin > Email",
        (
            ("email template", "email templates"),
            ("bounced address", "bounced addresses"),
            ("sender domain", "sender domains"),
            ("unsubscribe link", "unsubscribe links"),
        ),
    ),
    _Service(
        "Bison",
        "BSN",
        "file-storage",
        "the file storage backend",
        "file storage",
        "keeps every uploaded file in three copies across two data centres",
        "Storage",
        "the disk nodes",
        "file reads and writes",
        "deleted files",
        "Admin > Storage",
        (
            ("storage bucket", "storage buckets"),
            ("disk node", "disk nodes"),
            ("file replica", "file replicas"),
            ("upload size limit", "upload size limits"),
        ),
    ),
    _Service(
        "Gecko",
        "GKO",
        "editor",
        "the page editor",
        "editor",
        "lets several people write and comment on the same page at once",
        "Editor",
        "the real-time collaboration server",
        "edits",
        "page versions",
        "the page menu",
        (
            ("comment thread", "comment threads"),
            ("page template", "page templates"),
            ("version history", "version histories"),
            ("embedded table", "embedded tables"),
        ),
    ),
    _Service(
        "Ibis",
        "IBS",
        "audit-log",
        "the audit log",
        "audit log",
        "records who did what in the workspace, for admins and compliance reviews",
        "Trust",
        "the event stream",
        "audit events",
        "audit events",
        "Admin > Audit log",
        (
            ("audit event", "audit events"),
            ("audit export", "audit exports"),
            ("admin action filter", "admin action filters"),
            ("compliance report", "compliance reports"),
        ),
    ),
    _Service(
        "Tapir",
        "TPR",
        "scheduler",
        "the background job scheduler",
        "scheduled jobs",
        "runs recurring and delayed tasks such as clean-ups, reminders and exports",
        "Platform",
        "the job queue database",
        "jobs",
        "job history",
        "Admin > Automations",
        (
            ("recurring job", "recurring jobs"),
            ("job queue", "job queues"),
            ("worker pool", "worker pools"),
            ("reminder", "reminders"),
        ),
    ),
)


# --------------------------------------------------------------------------- articles
#
# Each topic: (title, category, audience, [text variants], [query variants]).
# Articles speak plainly; queries use {C} (code name) or {code} (error code).

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday")

_RUNBOOK: dict[str, tuple[str, list[str], list[str]]] = {
    "overview": (
        "What {short} does",
        [
            "{Name} {does}. It is run by the {team} team and depends on {upstream}.",
            "{Name} {does}. The {team} team owns it; when {upstream} is unavailable, {name} degrades "
            "gracefully instead of failing outright.",
        ],
        [
            "what is {C}",
            "what does {C} do",
            "{C} overview",
            "who owns {C} and what is it for",
            "explain {C} to a new hire",
        ],
    ),
    "restart": (
        "Restarting {short} safely",
        [
            "To restart {name} safely, take one instance out of rotation at a time and wait for it to "
            "report healthy before moving on. A full rolling restart takes about {minutes} minutes and "
            "in-flight {unit} are retried automatically.",
            "{Name} can be restarted without downtime: restart the instances one by one from the "
            "deployment console. Never restart all of them at once, or queued {unit} will pile up.",
        ],
        [
            "bounce {C}",
            "how to restart {C} safely",
            "{C} restart procedure",
            "{C} is stuck, restart steps",
            "rolling restart of {C}",
        ],
    ),
    "logs": (
        "Finding the logs of {short}",
        [
            "Logs for {name} are kept for {days} days in the central log viewer; filter on the service "
            "tag '{slug}'. To share them with support, export the time range as a compressed file.",
            "Every instance of {name} writes structured logs to the central log viewer. Search by "
            "request id to follow one of the {unit} from start to finish.",
        ],
        [
            "where are the {C} logs",
            "tail {C} logs",
            "export logs from {C} for support",
            "{C} log search by request id",
            "{C} logs",
        ],
    ),
    "oncall": (
        "Who to page for {short}",
        [
            "{Name} is owned by the {team} team. During an incident, page the {team} on-call engineer "
            "first; if nobody acknowledges within 15 minutes, escalate to the engineering manager.",
            "The {team} team keeps a weekly on-call schedule for {name}. The current engineer is shown "
            "at the top of the team's incident channel.",
        ],
        ["who is on call for {C}", "{C} escalation path", "page someone about {C}", "{C} rota", "{C} on-call contact"],
    ),
    "dashboard": (
        "Monitoring dashboard for {short}",
        [
            "The main monitoring dashboard for {name} shows the rate of {unit}, the error rate and "
            "response times, broken down by region. Red panels mean an alert is currently firing.",
            "To see how {name} is doing, open its monitoring dashboard: it graphs throughput, errors "
            "and the health of {upstream} over the last 24 hours.",
        ],
        [
            "{C} dashboard",
            "where can I see {C} error rate",
            "{C} metrics graphs",
            "{C} grafana board",
            "monitoring for {C}",
        ],
    ),
    "deploy": (
        "Releasing a new version of {short}",
        [
            "New versions of {name} go out through the deployment pipeline every {weekday}. A release "
            "first reaches 5% of traffic for an hour and is then rolled out to everyone.",
            "To ship a change to {name}, merge it to the main branch; the pipeline builds it, runs the "
            "tests and deploys it to staging, and a member of the {team} team approves production.",
        ],
        [
            "how do we release {C}",
            "{C} deploy schedule",
            "ship a new version of {C}",
            "{C} deployment steps",
            "{C} canary release",
        ],
    ),
    "rollback": (
        "Undoing a bad release of {short}",
        [
            "If a release of {name} misbehaves, roll back to the previous version from the deployment "
            "console; it takes about {minutes} minutes. Database changes are backwards compatible, so no "
            "data is lost.",
            "A faulty version of {name} can be reverted with one click in the deployment console. After "
            "reverting, tell the {team} team so they can block the release until it is fixed.",
        ],
        [
            "roll back {C}",
            "{C} bad release, revert",
            "undo last {C} deploy",
            "{C} rollback",
            "revert {C} to the previous version",
        ],
    ),
    "scaling": (
        "Adding capacity to {short}",
        [
            "{Name} adds instances automatically when CPU stays above 70% for five minutes, up to "
            "{cap} instances. Beyond that, ask the {team} team to raise the limit.",
            "During a traffic spike, {name} scales out on its own, but each new instance needs about "
            "two minutes to warm up. For planned events, raise the minimum instance count the day before.",
        ],
        [
            "{C} autoscaling",
            "add more capacity to {C}",
            "{C} scale out under load",
            "{C} max instances",
            "prepare {C} for a traffic spike",
        ],
    ),
    "healthcheck": (
        "Health check of {short}",
        [
            "Each instance of {name} answers a health check that reports whether it can reach "
            "{upstream}. An instance that fails three checks in a row is taken out of rotation and replaced.",
            "The health check of {name} is green when the instance has started, can reach {upstream} and "
            "has a backlog of fewer than {backlog} {unit}.",
        ],
        [
            "{C} health check",
            "how do I know if {C} is healthy",
            "{C} readiness probe failing",
            "{C} instances marked unhealthy",
            "{C} liveness check",
        ],
    ),
    "config": (
        "Changing the settings of {short}",
        [
            "Settings for {name} live in the shared configuration repository, one file per environment. "
            "Every change needs a review from the {team} team and is applied within ten minutes of merging.",
            "To change a setting of {name}, edit its configuration file and open a review request. "
            "Secrets are not kept there; they are stored in the secrets vault.",
        ],
        [
            "where is {C} config",
            "change a {C} setting",
            "{C} configuration repo",
            "{C} config change review",
            "edit {C} settings",
        ],
    ),
    "maintenance": (
        "Planned maintenance of {short}",
        [
            "Planned maintenance for {name} happens on {weekday} nights between 01:00 and 03:00 UTC. "
            "Customers see a banner a week before, and {name} stays readable throughout.",
            "{Name} is serviced once a month during a two-hour overnight slot announced on the status "
            "page. Avoid scheduling releases during that slot.",
        ],
        [
            "{C} maintenance window",
            "when is planned downtime for {C}",
            "{C} MW schedule",
            "{C} monthly maintenance slot",
            "is there {C} maintenance tonight",
        ],
    ),
    "outage": (
        "When {short} is down",
        [
            "When {name} is down, open an incident, page the {team} team and post a first update on the "
            "status page within 15 minutes, even if the cause is not known yet.",
            "If {name} stops working for everyone, declare an incident and keep customers informed on the "
            "status page every 30 minutes until it is resolved.",
        ],
        [
            "{C} is down what do I do",
            "{C} outage procedure",
            "status page update for {C} incident",
            "{C} major incident",
            "{C} not working for anyone",
        ],
    ),
    "latency": (
        "Slow response alert for {short}",
        [
            "The slow-response alert for {name} fires when the 95th percentile response time stays above "
            "{ms} ms for ten minutes. Check {upstream} first; it is the most common cause.",
            "When {name} answers slowly, look at the monitoring dashboard for a rise in {unit} and at "
            "{upstream}. Adding instances helps only if CPU is the bottleneck.",
        ],
        [
            "{C} slow alert",
            "{C} p95 latency alert firing",
            "{C} responding slowly",
            "{C} high latency",
            "why is {C} so slow",
        ],
    ),
    "access": (
        "Getting access to the admin tools of {short}",
        [
            "To use the admin tools of {name}, file an access request in the internal portal. A lead of the "
            "{team} team approves it, and access expires after 90 days unless renewed.",
            "Admin access to {name} is granted per person, never per team. Ask your manager to request it, "
            "and complete the data handling course first.",
        ],
        [
            "get access to {C} admin",
            "request permissions for {C}",
            "{C} admin tools access",
            "how do I get {C} access",
            "{C} access request",
        ],
    ),
    "retention": (
        "How long {short} keeps data",
        [
            "{Name} keeps {data} for {days} days, after which they are permanently deleted. Workspaces on "
            "the enterprise plan can ask for a longer period.",
            "By default, {data} held by {name} are deleted after {days} days. A legal hold pauses the "
            "deletion for the workspace concerned.",
        ],
        [
            "how long does {C} keep data",
            "{C} data retention",
            "when does {C} delete old data",
            "{C} retention period",
            "{C} purge policy",
        ],
    ),
    "certs": (
        "Certificate renewal for {short}",
        [
            "The TLS certificates used by {name} renew automatically 30 days before they expire. If a "
            "renewal fails, an alert goes to the {team} team with the steps to renew by hand.",
            "{Name} presents a certificate issued by the internal certificate authority. Expiry warnings "
            "start 21 days ahead; renewing by hand takes one command and a rolling restart.",
        ],
        [
            "{C} certificate expiring",
            "rotate {C} TLS cert",
            "{C} cert renewal",
            "{C} SSL certificate",
            "renew certs for {C}",
        ],
    ),
}

# error kind -> (number, title, [text variants])
_ERRORS: dict[str, tuple[int, str, list[str]]] = {
    "timeout": (
        214,
        "{Short}: 'This is taking longer than usual'",
        [
            "{Name} stops waiting for {upstream} after 30 seconds and shows 'This is taking longer than "
            "usual'. A retry normally succeeds; if the message keeps coming back, check the status of {upstream}.",
            "The 'request took too long' message from {name} means {upstream} did not answer in time. It is "
            "usually a short slowdown: wait a minute and try again.",
        ],
    ),
    "quota": (
        227,
        "{Short}: limit reached",
        [
            "A workspace on the standard plan can have up to {limit} {objs}. When the limit is reached, "
            "{name} refuses to create more until unused ones are removed or the plan is upgraded.",
            "{Name} allows at most {limit} {objs} per workspace. The error appears when someone tries to go "
            "over that limit; an admin can clean up old ones or ask for a higher limit.",
        ],
    ),
    "permission": (
        231,
        "{Short}: not allowed",
        [
            "This error means the person's role does not allow the action in {name}. A workspace admin can "
            "grant the right role from the Members page; it applies after the user signs in again.",
            "{Name} blocked the action because the account lacks the needed permission, for example a guest "
            "trying to change {objs}. Ask an admin to upgrade the role.",
        ],
    ),
    "invalid": (
        246,
        "{Short}: some fields are not valid",
        [
            "{Name} rejected the request because a required field was empty or in the wrong format, such as "
            "a {obj} without a name. Fix the highlighted field and submit again.",
            "The request to {name} was refused because of badly formatted input, for example a date typed as "
            "text or a name longer than 200 characters.",
        ],
    ),
    "conflict": (
        258,
        "{Short}: someone else changed this",
        [
            "Two people changed the same {obj} at almost the same moment and {name} kept the first change. "
            "Reload to see the latest version, then apply your change again.",
            "{Name} refused a change because the {obj} was modified by someone else after you opened it. "
            "Nothing is lost: reload the page and redo the edit.",
        ],
    ),
    "storage": (
        263,
        "{Short}: out of space",
        [
            "{Name} could not save because the workspace has used all of its storage. Free space by emptying "
            "the trash or deleting large files, or upgrade to a plan with more room.",
            "The workspace is full, so {name} rejects anything new. Admins can see what takes the most space "
            "on the storage page and remove old files.",
        ],
    ),
    "expired": (
        275,
        "{Short}: session expired",
        [
            "The sign-in token that {name} relies on has expired, which happens after a password change or 30 "
            "days without activity. Signing out and back in issues a new one.",
            "{Name} no longer accepts the saved credentials because they have expired. Sign in again; if the "
            "workspace uses single sign-on, the identity provider may ask for a second factor.",
        ],
    ),
    "readonly": (
        289,
        "{Short}: temporarily read-only",
        [
            "{Name} is read-only while planned maintenance is running. Changes made during that time are "
            "rejected, so wait until the banner disappears and try again.",
            "During maintenance, {name} lets people read but not change anything. The banner at the top of the "
            "page shows when writing will be possible again.",
        ],
    ),
}

_ERROR_QUERIES = [
    "what does {code} mean",
    "{code} error",
    "users are getting {code}",
    "how do I fix {code}",
    "{code} keeps showing up",
    "customer reports error {code}",
    "{code} on a support ticket",
    "meaning of {code}",
    "{code} when saving a {obj}",
    "got {code} while working on {objs}",
]

# how-to task -> (title, [text variants], [query variants])
_TASKS: dict[str, tuple[str, list[str], list[str]]] = {
    "setup": (
        "Setting up a {obj}",
        [
            "To add a {obj}, open {area} and choose 'New {obj}'. {Name} applies it within a minute, and admins "
            "can set it up for the whole workspace.",
            "You can create a {obj} from {area}. Give it a clear name, choose who it applies to and save; "
            "{name} starts using it straight away.",
        ],
        ["add a {obj} in {C}", "how to set up a {obj} in {C}", "{C}: create new {obj}", "new {obj} {C}"],
    ),
    "change": (
        "Changing a {obj}",
        [
            "To change an existing {obj}, open {area}, select it and edit the fields you need. Each change is "
            "recorded and takes effect the next time {name} uses it.",
            "Editing a {obj} is done from {area}. Only admins and the person who created it can change it, and "
            "{name} keeps the previous settings for 30 days.",
        ],
        ["edit a {obj} in {C}", "how do I change a {obj} in {C}", "{C} update {obj} settings", "modify {obj} {C}"],
    ),
    "remove": (
        "Removing a {obj}",
        [
            "To delete a {obj}, open {area}, select it and choose Remove. Deleted {objs} can be restored for 30 "
            "days before {name} erases them for good.",
            "Removing a {obj} is permanent once the 30-day undo period has passed. Open {area}, pick the {obj} "
            "and confirm.",
        ],
        ["delete a {obj} from {C}", "{C} remove {obj}", "undo deleting a {obj} in {C}", "get rid of a {obj} {C}"],
    ),
    "fix": (
        "Problems with a {obj}",
        [
            "If a {obj} does not behave as expected, first check that it is switched on in {area}. Most "
            "problems come from a missing permission or a recent change; the activity list shows who changed what.",
            "When a {obj} seems broken, reload the page and look for a warning badge in {area}. If the "
            "warning mentions {upstream}, the problem is on that side and usually clears by itself.",
        ],
        ["{obj} not working in {C}", "{C} {obj} broken", "why is my {obj} failing in {C}", "troubleshoot {obj} {C}"],
    ),
}

# Share of runbook queries that name the service in plain words rather than by code name.
PLAIN_SHARE = 0.2

# Grade-1 (partly relevant) article of the same service, by topic.
_RELATED = {
    "overview": "oncall",
    "restart": "healthcheck",
    "logs": "dashboard",
    "oncall": "outage",
    "dashboard": "latency",
    "deploy": "rollback",
    "rollback": "deploy",
    "scaling": "latency",
    "healthcheck": "restart",
    "config": "access",
    "maintenance": "outage",
    "outage": "oncall",
    "latency": "scaling",
    "access": "config",
    "retention": "config",
    "certs": "config",
    "err-timeout": "latency",
    "err-permission": "access",
    "err-readonly": "maintenance",
    "err-storage": "scaling",
}
_TASK_RELATED = {"setup": "change", "change": "setup", "remove": "setup", "fix": "setup"}


@dataclass
class DemoCorpus:
    """The demo's documents, evaluation queries with graded qrels, and training pairs."""

    documents: list[dict[str, Any]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    train_pairs: list[tuple[str, str]]
    # the document id of each training pair's positive, parallel to train_pairs
    train_doc_ids: list[str] = field(default_factory=list)
    seed: int = 0

    def doc_by_id(self) -> dict[str, dict[str, Any]]:
        return {d["id"]: d for d in self.documents}


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[AEIOUaeiou])(?![Uu]s)")


def _fix_articles(text: str) -> str:
    """'a excluded folder' -> 'an excluded folder' ('a usage report' stays)."""
    return _A_BEFORE_VOWEL.sub(lambda m: m.group(1) + "n ", text)


def _fill(template: str, values: dict[str, str]) -> str:
    text = _fix_articles(template.format(**values))
    return text[0].upper() + text[1:]


def build_demo_corpus(seed: int = 0, n_eval: int = 80, n_train: int = 300) -> DemoCorpus:
    """Generate the demo corpus, deterministically from ``seed``.

    About 600 documents, ``n_eval`` evaluation queries (BEIR-style graded qrels:
    2 = the answer, 1 = a related article of the same service) and ``n_train``
    (query, positive text) training pairs. Evaluation answers are never training
    positives and no query text appears in both sets.
    """
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []
    # (doc_id, kind, service, key) -> query templates and values, to draw queries from later
    targets: list[dict[str, Any]] = []

    for svc in SERVICES:
        base = {
            "name": svc.name,
            "Name": svc.name[0].upper() + svc.name[1:],
            "short": svc.short,
            "Short": svc.short[0].upper() + svc.short[1:],
            "does": svc.does,
            "team": svc.team,
            "upstream": svc.upstream,
            "unit": svc.unit,
            "data": svc.data,
            "area": svc.area,
            "slug": svc.slug,
            "minutes": str(rng.choice((5, 8, 10, 12, 15, 20))),
            "days": str(rng.choice((14, 30, 60, 90, 180, 365))),
            "weekday": rng.choice(_WEEKDAYS),
            "cap": str(rng.choice((12, 16, 24, 32, 48, 64))),
            "backlog": str(rng.choice((100, 500, 1000, 5000))),
            "ms": str(rng.choice((300, 500, 800, 1200, 2000))),
            "limit": str(rng.choice((50, 100, 200, 500, 1000))),
            "obj": svc.objects[0][0],
            "objs": svc.objects[0][1],
        }

        def add(key: str, title: str, text: str, category: str, audience: str, tags: list[str], svc=svc) -> str:
            doc_id = f"{svc.slug}-{key}"
            docs.append(
                {
                    "id": doc_id,
                    "text": text,
                    "title": title,
                    "category": category,
                    "lang": "en",
                    "meta": {
                        "service": svc.slug,
                        "team": svc.team.lower(),
                        "audience": audience,
                        "revision": rng.randint(1, 9),
                        "updated": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                        "tags": tags,
                    },
                }
            )
            return doc_id

        for topic, (title, texts, templates) in _RUNBOOK.items():
            doc_id = add(
                topic,
                _fill(title, base),
                _fill(rng.choice(texts), base),
                "reference" if topic == "overview" else "runbook",
                "staff",
                [svc.short, topic],
            )
            rel = _RELATED.get(topic)
            targets.append(
                {
                    "id": doc_id,
                    "kind": "runbook",
                    "svc": svc,
                    "templates": templates,
                    "values": {"C": svc.code},
                    "plain": {"C": svc.short},
                    "related": f"{svc.slug}-{rel}" if rel else None,
                }
            )

        for kind, (number, title, texts) in _ERRORS.items():
            doc_id = add(
                f"err-{kind}",
                _fill(title, base),
                _fill(rng.choice(texts), base),
                "troubleshooting",
                "customers",
                [svc.short, "error"],
            )
            rel = _RELATED.get(f"err-{kind}")
            targets.append(
                {
                    "id": doc_id,
                    "kind": "error",
                    "svc": svc,
                    "templates": _ERROR_QUERIES,
                    "values": {"code": f"{svc.prefix}-{number}", "obj": svc.objects[0][0], "objs": svc.objects[0][1]},
                    "related": f"{svc.slug}-{rel}" if rel else None,
                }
            )

        for obj, objs in svc.objects:
            values = dict(base, obj=obj, objs=objs, Obj=obj[0].upper() + obj[1:])
            for task, (title, texts, templates) in _TASKS.items():
                key = f"{obj.lower().replace(' ', '-')}-{task}"
                doc_id = add(
                    key, _fill(title, values), _fill(rng.choice(texts), values), "how-to", "customers", [svc.short, obj]
                )
                rel_key = f"{obj.lower().replace(' ', '-')}-{_TASK_RELATED[task]}"
                targets.append(
                    {
                        "id": doc_id,
                        "kind": "task",
                        "svc": svc,
                        "templates": templates,
                        "values": {"C": svc.code, "obj": obj},
                        "related": f"{svc.slug}-{rel_key}",
                    }
                )

    rng.shuffle(docs)

    # ---- split the articles: evaluation answers, training positives, untouched
    # Half of the evaluation queries ask runbook questions, a quarter error codes,
    # a quarter how-to tasks; the training pairs follow the same mix.
    by_kind: dict[str, list[dict[str, Any]]] = {"runbook": [], "error": [], "task": []}
    for t in targets:
        by_kind[t["kind"]].append(t)
    share = {"runbook": 0.5, "error": 0.25, "task": 0.25}
    eval_targets: list[dict[str, Any]] = []
    train_targets: list[dict[str, Any]] = []
    for kind, pool in by_kind.items():
        pool = list(pool)
        rng.shuffle(pool)
        n_e = round(n_eval * share[kind])
        n_t = round(n_train * share[kind])
        eval_targets += pool[:n_e]
        rest = pool[n_e:]
        # a training positive may take two differently phrased queries when the pool is short
        train_targets += (rest * 2)[:n_t]
    # top up rounding differences
    eval_targets = eval_targets[:n_eval]
    train_targets = train_targets[:n_train]

    used: set[str] = set()

    def make_query(t: dict[str, Any]) -> str:
        templates = list(t["templates"])
        rng.shuffle(templates)
        # now and then a runbook question names the service plainly instead of by code name
        values = t["plain"] if "plain" in t and rng.random() < PLAIN_SHARE else t["values"]
        for tpl in templates:
            q = _fix_articles(tpl.format(**values))
            if rng.random() < 0.5:
                q = q.lower()
            if q.lower() not in used:  # the model is uncased: compare without case
                used.add(q.lower())
                return q
        raise RuntimeError(f"no unused query left for {t['id']}")  # pragma: no cover

    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for i, t in enumerate(eval_targets):
        qid = f"q{i + 1:03d}"
        queries[qid] = make_query(t)
        grades = {t["id"]: 2}
        if t["related"]:
            grades[t["related"]] = 1
        qrels[qid] = grades

    text_of = {d["id"]: d["text"] for d in docs}
    rng.shuffle(train_targets)
    train_pairs = [(make_query(t), text_of[t["id"]]) for t in train_targets]
    train_doc_ids = [t["id"] for t in train_targets]
    return DemoCorpus(
        documents=docs, queries=queries, qrels=qrels, train_pairs=train_pairs, train_doc_ids=train_doc_ids, seed=seed
    )


def write_demo_files(corpus: DemoCorpus, folder: str | Path) -> dict[str, Path]:
    """Write corpus.jsonl, queries.jsonl, qrels.tsv (BEIR layout) and train.jsonl into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "corpus": folder / "corpus.jsonl",
        "queries": folder / "queries.jsonl",
        "qrels": folder / "qrels.tsv",
        "train": folder / "train.jsonl",
    }
    with paths["corpus"].open("w", encoding="utf-8") as f:
        for doc in corpus.documents:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    with paths["queries"].open("w", encoding="utf-8") as f:
        for qid, text in corpus.queries.items():
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    with paths["qrels"].open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["query-id", "corpus-id", "score"])
        for qid, rels in corpus.qrels.items():
            for doc_id, grade in rels.items():
                w.writerow([qid, doc_id, grade])
    with paths["train"].open("w", encoding="utf-8") as f:
        ids: list[str | None] = list(corpus.train_doc_ids) or [None] * len(corpus.train_pairs)
        for (query, positive), positive_id in zip(corpus.train_pairs, ids, strict=True):
            row = {"query": query, "positive": positive}
            if positive_id is not None:
                row["positive_id"] = positive_id
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return paths
