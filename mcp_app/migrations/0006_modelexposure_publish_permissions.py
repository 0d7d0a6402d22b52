# Permissions of their own for making an exposure public and for allowing credential-like fields.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('mcp_app', '0005_tokens_principals'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='modelexposure',
            options={'ordering': ['content_type__app_label', 'content_type__model'], 'permissions': [('publish_modelexposure', "Can make a model exposure public (readable without the model's view permission)"), ('allow_sensitive_modelexposure', 'Can allow credential-like fields on a model exposure')], 'verbose_name': 'model exposure', 'verbose_name_plural': 'model exposures'},
        ),
    ]
