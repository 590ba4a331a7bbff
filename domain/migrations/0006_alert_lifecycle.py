from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_telemetry')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AlertSilence',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema', fields.ForeignKeyField('models.Cinema', source_field='cinema_id', db_constraint=True, to_field='id', related_name='silences', on_delete=OnDelete.CASCADE)),
                ('device_id', fields.CharField(default='', max_length=64)),
                ('rule', fields.CharField(default='', max_length=64)),
                ('reason', fields.CharField(default='', max_length=200)),
                ('created_by', fields.CharField(default='', max_length=64)),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'telemetry_silence', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A silence: matching alerts are recorded but not told until it ends (e.g. 维护中 2小时).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TelemetryMinute',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField()),
                ('device_id', fields.CharField(max_length=64)),
                ('minute', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('metric', fields.CharField(max_length=48)),
                ('n', fields.IntField()),
                ('vmin', fields.FloatField()),
                ('vmax', fields.FloatField()),
                ('vsum', fields.FloatField()),
            ],
            options={'table': 'telemetry_minute', 'app': 'models', 'unique_together': (('device_id', 'minute', 'metric'),), 'pk_attr': 'id', 'table_description': 'Per-minute aggregate of one metric of one device (kept for the retention period).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TelemetryRule',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema', fields.ForeignKeyField('models.Cinema', source_field='cinema_id', db_constraint=True, to_field='id', related_name='telemetry_rules', on_delete=OnDelete.CASCADE)),
                ('device_id', fields.CharField(default='', max_length=64)),
                ('settings', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('updated_by', fields.CharField(default='', max_length=64)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'telemetry_rule', 'app': 'models', 'unique_together': (('cinema', 'device_id'),), 'pk_attr': 'id', 'table_description': 'Stored alert limits of a cinema (empty device id) or of one projector.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='AlertRecord',
            name='acknowledged_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='AlertRecord',
            name='acknowledged_by',
            field=fields.CharField(default='', max_length=64),
        ),
        ops.AddField(
            model_name='AlertRecord',
            name='reminded_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='AlertRecord',
            name='reminders',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='AlertRecord',
            name='repeats',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='AlertRecord',
            name='silenced',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Projector',
            name='health',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='Projector',
            name='health_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Projector',
            name='health_score',
            field=fields.IntField(null=True),
        ),
    ]
