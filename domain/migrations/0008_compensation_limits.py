from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_alert_spark')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CompensationLimit',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField()),
                ('role', fields.CharField(max_length=16)),
                ('limit_fen', fields.IntField()),
                ('set_by', fields.CharField(max_length=64)),
                ('set_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'compensation_limit', 'app': 'models', 'unique_together': (('cinema_id', 'role'),), 'pk_attr': 'id', 'table_description': 'The most one person of ``role`` may give at once in ``cinema_id``, in fen.'},
            bases=['Model'],
        ),
    ]
