from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0010_refund_states')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='WorkOrderEvent',
            index=Index(fields=['message_key']),
        ),
    ]
