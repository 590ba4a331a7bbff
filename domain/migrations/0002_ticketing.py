from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.orders import OrderState, RefundState, TicketState
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CheckIn',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('nonce', fields.CharField(unique=True, max_length=64)),
                ('ticket_id', fields.IntField(null=True)),
                ('result', fields.CharField(max_length=24)),
                ('staff', fields.CharField(max_length=64)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'check_in', 'app': 'models', 'pk_attr': 'id', 'table_description': "Scans, keyed by the scanner's nonce: a re-uploaded scan gets the same answer."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Discount',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField(db_index=True)),
                ('name', fields.CharField(max_length=32)),
                ('percent_off', fields.IntField()),
                ('film_id', fields.IntField(null=True)),
                ('weekdays', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('active', fields.BooleanField(default=True)),
            ],
            options={'table': 'discount', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Order',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('no', fields.CharField(unique=True, max_length=32)),
                ('cinema_id', fields.IntField(db_index=True)),
                ('showtime', fields.ForeignKeyField('models.Showtime', source_field='showtime_id', db_constraint=True, to_field='id', related_name='orders', on_delete=OnDelete.RESTRICT)),
                ('member_id', fields.IntField(null=True, db_index=True)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('channel', fields.CharField(default='chat', max_length=16)),
                ('state', fields.CharEnumField(default=OrderState.HELD, description='HELD: held\nPENDING_PAYMENT: pending_payment\nPAID: paid\nISSUED: issued\nCHECKED_IN: checked_in\nCANCELLED: cancelled\nEXPIRED: expired\nREFUNDED: refunded\nCHANGED: changed', enum_type=OrderState, max_length=16)),
                ('hold_id', fields.CharField(max_length=32)),
                ('seats', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('quote', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('amount_fen', fields.IntField()),
                ('paid_fen', fields.IntField(default=0)),
                ('refunded_fen', fields.IntField(default=0)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('transaction_id', fields.CharField(null=True, max_length=64)),
                ('changed_from', fields.ForeignKeyField('models.Order', source_field='changed_from_id', null=True, db_constraint=True, to_field='id', related_name='changed_to', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('paid_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('note', fields.CharField(default='', max_length=128)),
            ],
            options={'table': 'ticket_order', 'app': 'models', 'indexes': [Index(fields=['state', 'expires_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Payment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('order', fields.ForeignKeyField('models.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='payments', on_delete=OnDelete.CASCADE)),
                ('transaction_id', fields.CharField(unique=True, max_length=64)),
                ('amount_fen', fields.IntField()),
                ('outcome', fields.CharField(max_length=16)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'payment', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One row per successful payment WeChat Pay reported.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Refund',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('order', fields.ForeignKeyField('models.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='refunds', on_delete=OnDelete.CASCADE)),
                ('no', fields.CharField(unique=True, max_length=32)),
                ('amount_fen', fields.IntField()),
                ('reason', fields.CharField(max_length=64)),
                ('state', fields.CharEnumField(default=RefundState.PENDING, description='PENDING: pending\nSUCCEEDED: succeeded\nFAILED: failed', enum_type=RefundState, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('last_error', fields.CharField(null=True, max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('done_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'refund', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StoredKey',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('value', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'stored_key', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Ticket',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('order', fields.ForeignKeyField('models.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='tickets', on_delete=OnDelete.CASCADE)),
                ('showtime', fields.ForeignKeyField('models.Showtime', source_field='showtime_id', db_constraint=True, to_field='id', related_name='tickets', on_delete=OnDelete.RESTRICT)),
                ('seat', fields.CharField(max_length=8)),
                ('kind', fields.CharField(default='standard', max_length=16)),
                ('price_fen', fields.IntField()),
                ('secret', fields.CharField(unique=True, max_length=40)),
                ('state', fields.CharEnumField(default=TicketState.ISSUED, description='ISSUED: issued\nCHECKED_IN: checked_in\nREFUNDED: refunded\nCHANGED: changed', enum_type=TicketState, max_length=16)),
                ('active', fields.BooleanField(null=True, default=True)),
                ('checked_in_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('checked_in_by', fields.CharField(null=True, max_length=64)),
            ],
            options={'table': 'ticket', 'app': 'models', 'unique_together': (('showtime', 'seat', 'active'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Cinema',
            name='change_cutoff_minutes',
            field=fields.IntField(default=30),
        ),
        ops.AddField(
            model_name='Cinema',
            name='changes_enabled',
            field=fields.BooleanField(default=True),
        ),
        ops.AddField(
            model_name='Cinema',
            name='hold_minutes',
            field=fields.IntField(default=10),
        ),
        ops.AddField(
            model_name='Cinema',
            name='max_seats_per_order',
            field=fields.IntField(default=10),
        ),
        ops.AddField(
            model_name='Cinema',
            name='max_seats_per_showtime',
            field=fields.IntField(default=6),
        ),
        ops.AddField(
            model_name='Cinema',
            name='monthly_refund_quota',
            field=fields.IntField(default=3),
        ),
        ops.AddField(
            model_name='Cinema',
            name='refund_cutoff_minutes',
            field=fields.IntField(default=30),
        ),
        ops.AddField(
            model_name='Showtime',
            name='cancelled_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
