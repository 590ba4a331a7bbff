from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0014_device_day_last_at')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='WorkOrderEvent',
            index=Index(fields=['work_order_id', 'at']),
        ),
    ]
