from tortoise import migrations
from tortoise.migrations import operations as ops
from domain.orders import RefundState
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0009_outbox_expiry')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Refund',
            name='state',
            field=fields.CharEnumField(default=RefundState.PENDING, description='PENDING: pending\nPROCESSING: processing\nSUCCEEDED: succeeded\nABNORMAL: abnormal\nCLOSED: closed\nFAILED: failed', enum_type=RefundState, max_length=16),
        ),
        ops.AddField(
            model_name='Refund',
            name='accepted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Refund',
            name='alerted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Refund',
            name='next_attempt_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Refund',
            name='refund_id',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddIndex(
            model_name='Refund',
            index=Index(fields=['state', 'next_attempt_at']),
        ),
    ]
