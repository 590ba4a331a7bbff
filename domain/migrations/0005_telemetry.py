from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_feedback')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AlertRecord',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('alert_id', fields.CharField(unique=True, max_length=128)),
                ('cinema', fields.ForeignKeyField('models.Cinema', source_field='cinema_id', db_constraint=True, to_field='id', related_name='alerts', on_delete=OnDelete.CASCADE)),
                ('device_id', fields.CharField(db_index=True, max_length=64)),
                ('hall', fields.CharField(default='', max_length=32)),
                ('rule', fields.CharField(max_length=64)),
                ('severity', fields.CharField(max_length=16)),
                ('state', fields.CharField(max_length=16)),
                ('message', fields.CharField(default='', max_length=300)),
                ('value', fields.FloatField(null=True)),
                ('limit', fields.FloatField(null=True)),
                ('predicted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('fired_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('resolved_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('work_order_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'telemetry_alert', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One telemetry alert (an incident of a rule on a device) and the work order it opened.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='EdgeBox',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('box_id', fields.CharField(unique=True, max_length=64)),
                ('cinema', fields.ForeignKeyField('models.Cinema', source_field='cinema_id', db_constraint=True, to_field='id', related_name='edge_boxes', on_delete=OnDelete.CASCADE)),
                ('key', fields.CharField(max_length=128)),
                ('active', fields.BooleanField(default=True)),
            ],
            options={'table': 'edge_box', 'app': 'models', 'pk_attr': 'id', 'table_description': 'The small computer in a cinema that reports its projectors and signs with its own key.'},
            bases=['Model'],
        ),
    ]
