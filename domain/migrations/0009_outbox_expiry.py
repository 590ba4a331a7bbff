from tortoise import migrations
from tortoise.migrations import operations as ops
from domain.outbox import OutboundStatus
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0008_compensation_limits')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='OutboundMessage',
            name='status',
            field=fields.CharEnumField(default=OutboundStatus.PENDING, description='PENDING: pending\nSENT: sent\nFAILED: failed\nDEAD: dead\nEXPIRED: expired', enum_type=OutboundStatus, max_length=16),
        ),
        ops.AddField(
            model_name='OutboundMessage',
            name='expires_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='OutboundMessage',
            name='lapses',
            field=fields.IntField(default=0),
        ),
    ]
