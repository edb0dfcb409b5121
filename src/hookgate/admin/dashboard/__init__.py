"""The dashboard: the admin listener's web pages, for operators who would rather look.

It reads and changes nothing on its own: every figure comes from the admin API's
calls and answer types (``AdminApi``) or the metrics registry, and every action is
the API's own call, logged with the session that asked. Pages are rendered on the
server (``html``), the one script (``static/app.js``) only refreshes the overview.
"""
