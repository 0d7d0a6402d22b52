"""ToolCall.outcome: the "needs_input" choice (MCP 2026-07-28 multi round-trip requests: a call that ended
asking the client for input; the client's retry is recorded as a call of its own).

Only the field's choices change: the column and its rows stay as they are.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mcp_app", "0010_session_transport_choices"),
    ]

    operations = [
        migrations.AlterField(
            model_name="toolcall",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("started", "started (no outcome yet: running, or its worker stopped)"),
                    ("ok", "succeeded"),
                    ("tool_error", "tool error (isError)"),
                    ("refused", "refused (unknown, hidden or disabled)"),
                    ("failed", "failed (protocol error)"),
                    ("needs_input", "needs input (the client answers and calls again)"),
                ],
                db_index=True,
                max_length=12,
            ),
        ),
    ]
