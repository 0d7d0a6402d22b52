"""Session.transport: the "stdio" choice removed (no stdio transport exists).

Only the field's choices change: the column and its rows stay as they are (no row could hold "stdio", as no
transport ever created one; were there any, they would keep their value).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mcp_app", "0009_worker_leases"),
    ]

    operations = [
        migrations.AlterField(
            model_name="session",
            name="transport",
            field=models.CharField(
                choices=[("streamable_http", "Streamable HTTP"), ("sse", "HTTP+SSE (legacy)")],
                default="streamable_http",
                max_length=20,
            ),
        ),
    ]
